"""What PostgreSQL can store: text with no NUL character and no lone surrogate.

Why a module of its own: a Python string, and JSON, may hold both (``"\\u0000"``, ``"\\ud800"``),
SQLite stores them, and PostgreSQL's ``text`` and ``jsonb`` refuse them with a ``DataError``,
which reached a client as a 500 and a command as a traceback. Every way in (the services, the
API's schemas, the run options, a structured answer) asks here, so such input is refused with a
message on every database, before anything is written.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str:
    """Why ``value`` cannot be stored as text, or ``""`` when it can."""
    if "\x00" in value:
        return "a string holds a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a string holds a lone surrogate (not valid Unicode)"
    return ""


def replaced(value: str) -> str:
    """``value`` with each NUL and lone surrogate replaced by U+FFFD, for text that must be kept
    whatever it holds (a tool's output: refusing it would fail the call, and the model reads the
    same text as is stored)."""
    return _UNSTORABLE.sub("\ufffd", value) if text_problem(value) else value


def json_problem(value: Any, max_depth: int | None = None) -> str:
    """Why ``value`` (JSON as Python: dicts, lists, strings, numbers) cannot be stored in a
    ``jsonb`` column, or ``""`` when it can: a string or key ``text_problem`` refuses, or, with
    ``max_depth``, nesting deeper than that. Walked without recursion: the value may be as deep
    as the parser allowed."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if max_depth is not None and depth > max_depth:
            return f"nested too deep (more than {max_depth} levels)"
        if isinstance(node, dict):
            stack.extend((key, depth + 1) for key in node)
            stack.extend((item, depth + 1) for item in node.values())
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and (problem := text_problem(node)):
            return problem
    return ""
