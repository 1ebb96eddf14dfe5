"""Vendored subset of OpenAI's OpenAPI schemas, and a validator factory for tests.

Why: "parses in the SDK" proves the client accepts our answers, but the SDK is lenient
(extra keys, some optional fields). Validating against the API's own schemas catches
shapes the SDK would tolerate but the real API never produces. ``jsonschema`` is a test
dependency only, so it is imported lazily.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SUBSET = Path(__file__).with_name("openai_subset.json")


@cache
def document() -> dict[str, Any]:
    """The vendored document (``components.schemas`` + response ``webhooks``)."""
    data: dict[str, Any] = json.loads(SUBSET.read_text())
    return data


def names() -> list[str]:
    """Names of every vendored schema."""
    return sorted(document()["components"]["schemas"])


def validator(name: str) -> Any:
    """A Draft 2020-12 validator for ``components/schemas/<name>``."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

    doc = document()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"schema {name!r} is not vendored")
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return Draft202012Validator(schema)


def errors(name: str, instance: Any) -> list[str]:
    """Human-readable validation errors of ``instance`` against schema ``name`` (empty = ok)."""
    found = validator(name).iter_errors(instance)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]
