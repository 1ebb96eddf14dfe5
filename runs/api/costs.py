"""``GET /api/costs``: what the client's own runs cost, by a metadata key, model and mode.

Owner-scoped like every read (``access.owned_runs``): another client's runs are never counted,
even when they carry the same metadata value. A ``read`` token suffices. Costs are USD as
strings (``"0.00123000"``): decimal, never a float that would round an invoice. The period is
on ``created_at`` (like the spend limits, ``runs/spend.py``), half-open: ``since <= created_at <
until``.
"""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from .. import spend
from .access import owned_runs
from .schemas import Error, MetaKey, Usd, UtcDatetime

router = Router(tags=["costs"])


class CostGroup(Schema):
    runs: int = Field(description="Runs in the group.")
    priced: int = Field(description="Of those, runs with a cost (not still open or unpriced).")
    cost: Usd = Field(description="USD, the sum of their costs; null when none has one.")


class ValueCost(CostGroup):
    value: str | None = Field(description="The metadata value; null: runs without the key.")


class ModelCost(CostGroup):
    model: str


class ModeCost(CostGroup):
    mode: str = Field(description="standard, flex, 2h, 8h or batch (docs/modes.md).")


class Costs(Schema):
    key: str | None
    since: UtcDatetime | None
    until: UtcDatetime | None
    currency: str = "USD"
    total: CostGroup
    values: list[ValueCost] = Field(description="By metadata value, dearest first (with `key`).")
    more: bool = Field(description="More values than `limit` exist; the cheapest were left out.")
    by_model: list[ModelCost]
    by_mode: list[ModeCost]


@router.get("", response={200: Costs, 401: Error, 422: Error, 429: Error})
def costs(
    request: HttpRequest,
    key: Annotated[
        MetaKey | None, Query(None, description="A metadata key to total by, e.g. `customer`.")
    ] = None,
    since: Annotated[
        UtcDatetime | None, Query(None, description="Runs created at or after.")
    ] = None,
    until: Annotated[UtcDatetime | None, Query(None, description="Runs created before.")] = None,
    limit: Annotated[int, Query(100, ge=1, le=1000, description="Most values listed.")] = 100,
) -> dict[str, object]:
    """Cost of the client's runs created in the period: in all, by model, by mode and, with
    ``key``, by that metadata key's value (e.g. per customer)."""
    runs = owned_runs(request)
    if since is not None:
        runs = runs.filter(created_at__gte=since)
    if until is not None:
        runs = runs.filter(created_at__lt=until)
    return {"key": key, "since": since, "until": until, **spend.totals(runs, key, limit)}
