"""Argument helpers shared by the management commands: bad input is exit code 2."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from ...arguments import check_text as check_stored_text

BAD_ARGUMENTS = 2


def bad(message: str) -> CommandError:
    """A CommandError that exits with 2, the conventional code for bad arguments."""
    return CommandError(message, returncode=BAD_ARGUMENTS)


def check_seconds(name: str, value: float | None, *, zero_ok: bool = False) -> None:
    """Refuse ``--name`` unless it is a finite number above 0 (or 0 with ``zero_ok``); None is
    "not given". Why not ``value <= 0``: ``nan`` passes every comparison, and a ``--timeout nan``
    waited for ever."""
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise bad(f"{name} must be a number of seconds {'>= 0' if zero_ok else '> 0'}, got {value}")


def check_text(name: str, value: str | None) -> None:
    """Refuse an argument that is not text (bytes that are not UTF-8 arrive as lone surrogates,
    which no API call and no database column can carry): ``arguments.check_text``'s refusal,
    as exit code 2."""
    if value is None:
        return
    try:
        check_stored_text(value, name)
    except ValidationError as exc:
        raise bad(exc.messages[0]) from None


def parse_metadata(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` to a dict; anything else is a clear error."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise bad(f"--metadata expects key=value, got {pair!r}")
        metadata[key.strip()] = value
    return metadata


def read_schema(path: str) -> dict[str, Any]:
    """``--schema FILE.json``: the file's JSON object, named after the file when it is a bare
    schema without a ``title`` (``runs/options.py`` checks the schema itself)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise bad(f"--schema: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"--schema: {path} is not JSON: {exc}") from None
    except RecursionError:
        raise bad(f"--schema: {path} is nested too deeply to read") from None
    if not isinstance(data, dict):
        raise bad(f"--schema: {path} must hold a JSON object (a schema), not {type(data).__name__}")
    if "schema" not in data and "title" not in data:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)[:64] or "output"
        return {"name": name, "schema": data}
    return data
