"""Argument helpers shared by the management commands: bad input is exit code 2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError

BAD_ARGUMENTS = 2


def bad(message: str) -> CommandError:
    """A CommandError that exits with 2, the conventional code for bad arguments."""
    return CommandError(message, returncode=BAD_ARGUMENTS)


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
    if not isinstance(data, dict):
        raise bad(f"--schema: {path} must hold a JSON object (a schema), not {type(data).__name__}")
    if "schema" not in data and "title" not in data:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)[:64] or "output"
        return {"name": name, "schema": data}
    return data
