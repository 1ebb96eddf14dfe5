"""Placeholder: the price table (issue 16). ``cost_of`` is the interface others call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def cost_of(model: str, usage: dict[str, Any] | None, mode: str) -> Decimal | None:
    """USD for ``usage`` of ``model`` processed in ``mode``; None when the table lacks it."""
    return None
