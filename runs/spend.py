"""What runs cost, summed: totals by metadata value, model and mode, and spend limits (issue 16).

``totals`` feeds the API's ``GET /api/costs`` (one owner's runs) and the admin's Costs page (all
runs); ``check`` refuses one more run when a spend limit is reached.

``RUNS_SPEND_LIMITS = {"customer": {"usd": "10.00", "period": "day"}}`` means: a new run whose
metadata has ``customer=X`` is refused while X's runs (of the same owner) created in the current
UTC period already cost at least $10.00. Not the request-rate budget (``budget.py``): that one
paces calls to OpenAI, this one caps money per customer.

``create_run`` calls ``check`` inside its transaction, before it writes or sends anything, so a
refused run leaves no row and costs no API call. Concurrent creates for one key and value
serialize on a transaction-scoped lock (PostgreSQL: ``pg_advisory_xact_lock``; SQLite already
serializes writers), and runs still open count at an estimate, so the overshoot is bounded:
docs/modes.md, "Spend limits".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from . import pricing
from .conf import settings
from .metadata_query import value_of, with_entry
from .models import Run
from .status import ACTIVE

PERIODS = ("hour", "day", "week", "month")


def period_start(period: str, now: datetime | None = None) -> datetime:
    """Start of the current calendar ``period`` in UTC (weeks start on Monday)."""
    now = (now or timezone.now()).astimezone(UTC)
    start = now.replace(minute=0, second=0, microsecond=0)
    if period == "hour":
        return start
    start = start.replace(hour=0)
    if period == "day":
        return start
    if period == "week":
        return start - timedelta(days=start.weekday())
    if period == "month":
        return start.replace(day=1)
    raise ValueError(f"unknown spend-limit period {period!r}; expected one of {PERIODS}")


def limits() -> dict[str, tuple[Decimal, str]]:
    """``RUNS_SPEND_LIMITS`` checked: key -> (USD, period). Bad: ``ImproperlyConfigured``."""
    raw = settings.RUNS_SPEND_LIMITS
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            'RUNS_SPEND_LIMITS must be a mapping: metadata key -> {"usd": ..., "period": ...}'
        )
    out: dict[str, tuple[Decimal, str]] = {}
    for key, entry in raw.items():
        where = f"RUNS_SPEND_LIMITS[{key!r}]"
        if not isinstance(key, str) or not key or len(key) > 64:
            raise ImproperlyConfigured(f"{where}: a metadata key is a string of 1-64 characters")
        if not isinstance(entry, Mapping) or set(entry) != {"usd", "period"}:
            raise ImproperlyConfigured(f'{where} must have exactly the keys "usd" and "period"')
        if entry["period"] not in PERIODS:
            raise ImproperlyConfigured(
                f"{where}['period'] = {entry['period']!r}; expected one of {', '.join(PERIODS)}"
            )
        out[key] = (pricing.amount(entry["usd"], f"{where}['usd']"), entry["period"])
    return out


def spent(owner: str, key: str, value: str, since: datetime) -> Decimal:
    """What ``owner``'s runs with ``key=value`` created since ``since`` cost, open ones estimated.

    A run with a cost counts at its cost; an open run without one counts at its
    ``max_output_tokens`` at its model's output price in its mode (0 when it has no cap, or the
    table lacks its model or its mode: a tier it does not price, ``Mode.OTHER_TIER``); an ended
    run without a cost (unknown model, unpriced tier, no usage) counts 0. Unpriced runs count 0
    rather than an invented price, so a limit does not see them (docs/modes.md). One query: a
    ``GROUP BY`` model and mode over one key's runs in one period.
    """
    runs = with_entry(Run.objects.filter(owner=owner, created_at__gte=since), key, value)
    unpriced_open = Q(cost__isnull=True, status__in=ACTIVE)
    rows = (
        runs.order_by()
        .values("model", "mode")
        .annotate(usd=Sum("cost"), cap=Sum("max_output_tokens", filter=unpriced_open))
    )
    total = Decimal(0)
    for row in rows:
        total += _usd(row["usd"]) or 0
        if row["cap"]:
            total += estimate(row["model"], row["mode"], row["cap"])
    return total


def estimate(model: str, mode: str, output_tokens: int) -> Decimal:
    """The most ``output_tokens`` can cost (0 for a model or mode the table does not price)."""
    return pricing.cost_of(model, {"output_tokens": output_tokens}, mode) or Decimal(0)


def _usd(value: Any) -> Decimal | None:
    """A database sum as USD to 8 places (SQLite sums decimals as floats: 1.850000000000000)."""
    return None if value is None else Decimal(value).quantize(pricing.QUANT)


def _groups(rows: QuerySet[Run], by: str | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """``rows`` (a ``values()`` query) with their run count, priced count and cost; with
    ``limit``, the dearest ``limit`` groups (ties by ``by``)."""
    rows = rows.annotate(runs=Count("id"), priced=Count("cost"), usd=Sum("cost"))
    if limit:
        rows = rows.order_by(F("usd").desc(nulls_last=True), *([by] if by else []))[:limit]
    return [{**row, "cost": _usd(row.pop("usd"))} for row in rows]


def totals(runs: QuerySet[Run], key: str | None = None, limit: int = 100) -> dict[str, Any]:
    """Cost of ``runs``: in all, by model, by mode, and by ``metadata[key]`` (top ``limit``).

    Every group says how many runs it has (``runs``), how many of them have a cost (``priced``:
    the others are still open or of a model the price table lacks) and their summed ``cost``
    (None when none has one). ``values`` are ordered by cost, dearest first; ``more`` says that
    groups were left out past ``limit``. Runs without the key form the group of value None.
    """
    by_model_mode = _groups(runs.order_by().values("model", "mode"))
    result: dict[str, Any] = {
        "total": _sum(by_model_mode),
        "by_model": _merge(by_model_mode, "model"),
        "by_mode": _merge(by_model_mode, "mode"),
        "values": [],
        "more": False,
    }
    if key:
        grouped = runs.order_by().annotate(value=value_of(key, runs.db)).values("value")
        ordered = _groups(grouped, "value", limit + 1)
        result["values"], result["more"] = ordered[:limit], len(ordered) > limit
    return result


def _sum(rows: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    return {
        "runs": sum(r["runs"] for r in rows),
        "priced": sum(r["priced"] for r in rows),
        "cost": sum(costs, Decimal(0)) if costs else None,
    }


def _merge(rows: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """``rows`` grouped by (model, mode) summed over ``field`` alone, dearest first."""
    names = sorted({r[field] for r in rows})
    merged = [{field: n, **_sum([r for r in rows if r[field] == n])} for n in names]
    return sorted(merged, key=lambda g: g["cost"] or Decimal(-1), reverse=True)


def _lock(owner: str, key: str, value: str) -> None:
    """Serialize creates for one owner, key and value until the transaction ends (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return  # SQLite serializes writers; other databases: unsupported, documented
    digest = hashlib.blake2b(f"{owner}\0{key}\0{value}".encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)]
        )


def lock_all(metadatas: list[Mapping[str, str]], *, owner: str) -> None:
    """Take the lock of every limited (key, value) among ``metadatas`` in one sorted order,
    before checking them one by one (``check`` locks again: the locks stack): two transactions
    that check several values each cannot then hold one another's (PostgreSQL would abort one,
    a deadlock, where the caller expects a refusal or a pass)."""
    configured = limits()
    pairs = {(k, str(m[k])) for m in metadatas for k in set(configured) & set(m or {})}
    for key, value in sorted(pairs):
        _lock(owner, key, value)


def check(
    metadata: Mapping[str, str], *, owner: str, model: str, ahead: Decimal = Decimal(0)
) -> None:
    """Raise ``ValidationError`` when a spend limit forbids one more run with ``metadata``.

    Call it inside the transaction that inserts the run (``create_run`` does): the PostgreSQL
    lock lasts until that transaction ends, so the next create for the value sees this run.
    Keys are locked in sorted order, so two creates with several limited keys cannot deadlock.
    ``model`` is the new run's: it has no cost yet and is not counted. ``ahead`` is the estimate
    of the runs inserted with it before it (a batch's): the last of many passes only where it
    would have passed alone, after the others, so a batch is no way around a limit.
    """
    configured = limits()
    for key in sorted(set(configured) & set(metadata or {})):
        usd, period = configured[key]
        value = str(metadata[key])
        _lock(owner, key, value)
        since = period_start(period)
        used = spent(owner, key, value, since)
        if used + ahead >= usd:
            raise ValidationError(
                f"spend limit reached: {key}={value} has spent ${used:.4f} of its ${usd} per"
                f" {period} (UTC, since {since.isoformat()}; open runs at the most their"
                " max_output_tokens can cost)"
                + (f"; these runs would add up to ${ahead:.4f} before the last" if ahead else ""),
                code="spend_limit",
            )
