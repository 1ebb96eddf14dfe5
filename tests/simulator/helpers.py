"""Shared test helpers: strict SDK parsing and waiting on the simulator's clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from runs_simulator import schemas

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def strict(model: type[M], payload: dict[str, Any]) -> M:
    """Validate ``payload`` with the SDK model (pydantic): missing/wrong fields raise."""
    return model.model_validate(payload)


def assert_schema(name: str, payload: Any) -> None:
    """Fail with every validation error of ``payload`` against the vendored schema."""
    problems = schemas.errors(name, payload)
    assert not problems, f"{name} schema violations:\n" + "\n".join(problems[:20])


def wait_for(
    probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 5.0, interval: float = 0.05
) -> T:
    """Call ``probe`` until ``done(result)``; return the last result (fails on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {result!r}")
        time.sleep(interval)


def item_text(item: BaseModel) -> str:
    """Text of the first content part of a conversation item (SDK unions made simple)."""
    return str(item.model_dump()["content"][0]["text"])
