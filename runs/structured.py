"""Structured outputs (issue 16): a completed run's text parsed and checked against its schema.

OpenAI's strict mode constrains what the model emits, but a non-strict schema does not, a
refusal arrives as plain text, and a compatible server may ignore ``text.format``. The run
promised its caller JSON of a shape, so the promise is checked before the run is called
``completed``: a run whose output does not parse or match fails, with the first violation
named and the text kept for inspection.

Pure: nothing here reads the database or settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jsonschema import exceptions, validators

NOT_JSON = "output_not_json"
MISMATCH = "output_schema_mismatch"
#: Enough of a bad value or a bad output to recognise it in ``last_error``, not the whole thing.
SHOWN_CHARS = 120


@dataclass(frozen=True)
class Checked:
    """The outcome: ``parsed`` when it matched, else an error code and message."""

    parsed: Any = None
    error_code: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_code


def check(response_format: dict[str, Any], output_text: str) -> Checked:
    """Parse ``output_text`` as JSON and validate it against ``response_format["schema"]``."""
    name = response_format.get("name", "output")
    try:
        parsed = json.loads(output_text)
    except (TypeError, ValueError) as exc:
        shown = _shorten(output_text) if output_text else "(empty)"
        return Checked(
            error_code=NOT_JSON,
            error=f"The output is not JSON as the {name!r} schema asks ({exc}); output: {shown}",
        )
    schema = response_format.get("schema") or {}
    try:
        validator = validators.validator_for(schema)(schema)
        violation = exceptions.best_match(validator.iter_errors(parsed))
    except Exception as exc:  # noqa: BLE001 - a schema we cannot apply must not crash the tick
        return Checked(
            error_code=MISMATCH,
            error=f"The output could not be checked against the {name!r} schema: {exc}",
        )
    if violation is None:
        return Checked(parsed=parsed)
    return Checked(
        error_code=MISMATCH,
        error=(
            f"The output does not match the {name!r} schema: at {json_path(violation.path)}, "
            f"{_shorten(violation.message)}"
        ),
    )


def json_path(path: Any) -> str:
    """A jsonschema error's path as ``$.items[0].name``."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _shorten(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
