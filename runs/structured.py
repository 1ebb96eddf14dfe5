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
from referencing import Registry

from . import storable

NOT_JSON = "output_not_json"
MISMATCH = "output_schema_mismatch"
#: Enough of a bad value or a bad output to recognise it in ``last_error``, not the whole thing.
SHOWN_CHARS = 120
#: Deeper output is refused whatever the parser allowed: how deep ``json.loads`` gets depends on
#: the thread's stack and recursion limit, and validating or storing it would recurse again.
MAX_DEPTH = 256


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
    """Parse ``output_text`` as JSON and validate it against ``response_format["schema"]``.

    Never raises: every tick that ends a run (a poll, a batched poll, a Batch API job's settle)
    calls it, and an exception there would repeat at every retry until the deadline, or crash
    the settle of a whole batch. Whatever goes wrong is a failed check, with the reason.
    """
    name = response_format.get("name", "output")
    try:
        parsed = json.loads(output_text)
    except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        shown = _shorten(output_text) if output_text else "(empty)"
        why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        return Checked(
            error_code=NOT_JSON,
            error=f"The output is not JSON as the {name!r} schema asks ({why}); output: {shown}",
        )
    unstorable = _unstorable(parsed)
    if unstorable:  # not JSON we can keep: the same code as text that does not parse
        return Checked(
            error_code=NOT_JSON,
            error=f"The output is JSON but cannot be stored as the {name!r} output: {unstorable}",
        )
    schema = response_format.get("schema") or {}
    try:
        # An empty registry retrieves nothing: a remote $ref (refused at creation, but a row
        # may predate that rule) fails the check instead of making the worker fetch a URL.
        validator = validators.validator_for(schema)(schema, registry=Registry())
        violation = exceptions.best_match(validator.iter_errors(parsed))
        where = "" if violation is None else json_path(violation.path)
    except Exception as exc:  # noqa: BLE001 - a schema we cannot apply must not crash the tick
        return Checked(
            error_code=MISMATCH,
            error=f"The output could not be checked against the {name!r} schema: "
            + _shorten(str(exc) or type(exc).__name__),
        )
    if violation is None:
        return Checked(parsed=parsed)
    return Checked(
        error_code=MISMATCH,
        error=(
            f"The output does not match the {name!r} schema: at {where}, "
            f"{_shorten(violation.message)}"
        ),
    )


def _unstorable(value: Any) -> str:
    """Why ``value`` cannot be saved in a JSON column (or checked safely), or "" when it can:
    deeper than ``MAX_DEPTH``, or a string ``jsonb`` refuses (``runs.storable``)."""
    return storable.json_problem(value, MAX_DEPTH)


def json_path(path: Any) -> str:
    """A jsonschema error's path as ``$.items[0].name``."""
    text = "$"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _shorten(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."
