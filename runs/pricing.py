"""The price table: token usage -> USD, per model and processing mode (issue 16).

A run's ``cost`` is computed once, when it reaches a terminal status (``cost_of``), from the
usage the API reported. The table ships with the app so a host gets costs without configuring
anything; ``RUNS_PRICES`` adds models or replaces entries when OpenAI changes a price, without
waiting for a release. An unknown model prices to ``None``: a wrong number on an invoice is worse
than a missing one, so a name matches exactly or as a *dated snapshot* of a listed model
(``gpt-4.1-mini-2025-04-14`` -> ``gpt-4.1-mini``), never by a looser prefix (``gpt-4o-mini`` is
not ``gpt-4o``, ``gpt-5-pro`` is not ``gpt-5``).

Where the figures come from (USD per 1M tokens; docs/modes.md, "Prices"):

- standard input / cached input / output per model: OpenAI's pricing page (``PRICES_SOURCE``).
  The gpt-5.4 and gpt-5.5 rows are the page as of ``PRICES_TAKEN``; the gpt-5, gpt-5.1,
  gpt-4.1, gpt-4o and o-series rows are the figures the page has published for those models
  since their release (cross-checked against copies of the page from 2026, which list them
  unchanged). The page was read through such copies, not fetched live: check a row there
  before relying on it for an invoice, and override it with ``RUNS_PRICES`` if it moved.
- batch: 50 % of standard, input and output alike (OpenAI's Batch API guide);
- flex: "priced at Batch API rates", i.e. 50 % of standard (OpenAI's flex processing guide);
- 2h / 8h background windows: "30% below Standard" / "40% below Standard" on model token rates,
  follow-up requests included (OpenAI's background mode guide, and the flex guide's note on it).

Other service tiers (priority, scale, auto, ...) are not priced: their runs' mode is
``Mode.OTHER_TIER`` and their cost null. Flex and the windows exist for some models only;
OpenAI refuses the request for the others, so a discount here only ever meets usage of a model
that has it. Reasoning tokens are part of ``output_tokens`` (Responses) and
``completion_tokens`` (Assistants, chat) and cost as output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from django.core.exceptions import ImproperlyConfigured

from .conf import settings
from .status import Mode

logger = logging.getLogger(__name__)

#: Where the shipped figures come from and when they were taken.
PRICES_SOURCE = "https://openai.com/api/pricing/"
PRICES_TAKEN = "2026-05-22"
#: Where the mode discounts are published.
DISCOUNTS_SOURCE = {
    Mode.BATCH: "https://developers.openai.com/api/docs/guides/batch",
    Mode.FLEX: "https://developers.openai.com/api/docs/guides/flex-processing",
    Mode.WINDOW_2H: "https://developers.openai.com/api/docs/guides/background",
    Mode.WINDOW_8H: "https://developers.openai.com/api/docs/guides/background",
}

#: Every cost is rounded to this many decimal places (USD), like ``Run.cost``.
QUANT = Decimal("0.00000001")
_MILLION = Decimal(1_000_000)
# A dated snapshot of a listed model: name-YYYY-MM-DD (gpt-4.1-2025-04-14) or name-MMDD.
_SNAPSHOT = re.compile(r"^(?P<base>.+)-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


class Price(NamedTuple):
    """USD per 1M tokens at standard processing."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


def _p(inp: str, cached: str, out: str) -> Price:
    return Price(Decimal(inp), Decimal(cached), Decimal(out))


#: model -> standard price, USD per 1M tokens (input, cached input, output).
PRICES: dict[str, Price] = {
    "gpt-5.5": _p("5.00", "0.50", "30.00"),
    "gpt-5.4": _p("2.50", "0.25", "15.00"),
    "gpt-5.4-mini": _p("0.75", "0.075", "4.50"),
    "gpt-5.4-nano": _p("0.20", "0.02", "1.25"),
    "gpt-5.1": _p("1.25", "0.125", "10.00"),
    "gpt-5": _p("1.25", "0.125", "10.00"),
    "gpt-5-mini": _p("0.25", "0.025", "2.00"),
    "gpt-5-nano": _p("0.05", "0.005", "0.40"),
    "gpt-4.1": _p("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": _p("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.025", "0.40"),
    "gpt-4o": _p("2.50", "1.25", "10.00"),
    # The first gpt-4o snapshot kept its launch price, and has no cached-input discount: priced
    # as gpt-4o it would show a third to a half of what it costs.
    "gpt-4o-2024-05-13": _p("5.00", "5.00", "15.00"),
    "gpt-4o-mini": _p("0.15", "0.075", "0.60"),
    "o3": _p("2.00", "0.50", "8.00"),
    "o3-mini": _p("1.10", "0.55", "4.40"),
    "o4-mini": _p("1.10", "0.275", "4.40"),
}

#: mode -> multiplier on the standard price (sources: ``DISCOUNTS_SOURCE``). ``Mode.OTHER_TIER``
#: (priority, scale, auto, ...: ``options.mode_of``) is left out on purpose: its runs have no cost.
MODE_FACTORS: dict[str, Decimal] = {
    Mode.STANDARD: Decimal("1"),
    Mode.FLEX: Decimal("0.5"),
    Mode.BATCH: Decimal("0.5"),
    Mode.WINDOW_2H: Decimal("0.7"),
    Mode.WINDOW_8H: Decimal("0.6"),
}


def amount(value: Any, where: str) -> Decimal:
    """A non-negative USD amount from a setting (a number or a numeric string, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ImproperlyConfigured(f"{where} must be a number or a numeric string, not {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ImproperlyConfigured(f"{where} must be a number, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ImproperlyConfigured(f"{where} must be a non-negative amount, not {value!r}")
    return amount


def parse_prices(raw: Any) -> dict[str, Price]:
    """``RUNS_PRICES`` checked: model -> Price. A bad entry raises ``ImproperlyConfigured``."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            'RUNS_PRICES must be a mapping: model -> {"input", "cached_input", "output"}'
        )
    table: dict[str, Price] = {}
    for model, entry in raw.items():
        where = f"RUNS_PRICES[{model!r}]"
        if not isinstance(model, str) or not model:
            raise ImproperlyConfigured(f"{where}: a model name must be a non-empty string")
        if not isinstance(entry, Mapping) or set(entry) != set(Price._fields):
            raise ImproperlyConfigured(
                f"{where} must have exactly the keys input, cached_input and output "
                "(USD per 1M tokens)"
            )
        table[model] = Price(*(amount(entry[k], f"{where}[{k!r}]") for k in Price._fields))
    return table


def price_table() -> dict[str, Price]:
    """The shipped table with ``RUNS_PRICES`` applied on top."""
    return {**PRICES, **parse_prices(settings.RUNS_PRICES)}


def price_for(model: str) -> Price | None:
    """``model``'s price: its exact name, else the model it is a dated snapshot of, else None."""
    table = price_table()
    if model in table:
        return table[model]
    match = _SNAPSHOT.match(model or "")
    return table.get(match["base"]) if match else None


def _count(value: Any) -> int | None:
    if value is None:
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def tokens(usage: Mapping[str, Any]) -> tuple[int, int, int] | None:
    """(uncached input, cached input, output) from either usage shape; None if malformed.

    Responses: ``input_tokens``, ``input_tokens_details.cached_tokens``, ``output_tokens``.
    Assistants / chat: ``prompt_tokens``, ``prompt_tokens_details.cached_tokens``,
    ``completion_tokens``.
    """
    responses = "input_tokens" in usage or "output_tokens" in usage
    inp_key, out_key = ("input", "output") if responses else ("prompt", "completion")
    details = usage.get(f"{inp_key}_tokens_details") or {}
    inp = _count(usage.get(f"{inp_key}_tokens"))
    out = _count(usage.get(f"{out_key}_tokens"))
    cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    if inp is None or out is None or cached is None:
        return None
    cached = min(cached, inp)
    return inp - cached, cached, out


def cost_of(model: str, usage: dict[str, Any] | None, mode: str) -> Decimal | None:
    """USD for ``usage`` of ``model`` processed in ``mode``; None when the table lacks it.

    None also for a mode the table does not price (``Mode.OTHER_TIER``: a priority or scale run
    priced at standard rates would be a guess), for no usage (a run that failed before any
    token) and for a usage we cannot read: the engine calls this on every terminal move, so it
    never raises.
    """
    if not usage or not isinstance(usage, Mapping) or mode not in MODE_FACTORS:
        return None
    try:
        price = price_for(model)
    except ImproperlyConfigured as exc:  # the system check reports it at start-up too
        logger.error("no cost for a %s run: %s", model, exc)
        return None
    counts = tokens(usage)
    if price is None or counts is None:
        return None
    uncached, cached, out = counts
    total = uncached * price.input + cached * price.cached_input + out * price.output
    return (total * MODE_FACTORS[mode] / _MILLION).quantize(QUANT)
