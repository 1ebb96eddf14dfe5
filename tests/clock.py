"""Moments before now, for rows whose due time, claim or lease a test sets in the past."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone


def ago(seconds: float) -> datetime:
    """The moment ``seconds`` before now, aware, as the database stores it."""
    return timezone.now() - timedelta(seconds=seconds)
