"""Cursor pages (``after`` + ``limit``), the shape of every list endpoint of the API.

Why shared: files and batches list the same way (newest first, ``has_more``, ``first_id``,
``last_id``), and the SDK's cursor pages follow ``after=<last id>`` until ``has_more`` is false.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import bad_request

T = TypeVar("T")


def limit(params: dict[str, str], default: int, maximum: int) -> int:
    """``limit`` from the query string, within ``[1, maximum]`` (400 otherwise)."""
    raw = params.get("limit")
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise bad_request("Invalid 'limit': expected an integer.", "limit") from None
    if not 1 <= value <= maximum:
        raise bad_request(f"Invalid 'limit': expected a value between 1 and {maximum}.", "limit")
    return value


def page(
    ordered: Sequence[T],
    params: dict[str, str],
    render: Callable[[T], dict[str, Any]],
    ident: Callable[[T], str],
    *,
    default: int,
    maximum: int,
) -> dict[str, Any]:
    """One page of ``ordered`` after the ``after`` cursor (an unknown cursor is a 400)."""
    size = limit(params, default, maximum)
    rest = list(ordered)
    after = params.get("after")
    if after:
        ids = [ident(item) for item in rest]
        if after not in ids:
            raise bad_request(f"Invalid 'after': no object '{after}'.", "after")
        rest = rest[ids.index(after) + 1 :]
    chosen = rest[:size]
    data = [render(item) for item in chosen]
    return {
        "object": "list",
        "data": data,
        "first_id": ident(chosen[0]) if chosen else None,
        "last_id": ident(chosen[-1]) if chosen else None,
        "has_more": len(rest) > size,
    }
