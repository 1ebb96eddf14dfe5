"""Spend limits (runs/spend.py): a metadata value that has spent its limit gets no new run.

``RUNS_SPEND_LIMITS = {"customer": {"usd": "1.00", "period": "day"}}`` here: a run whose
metadata says ``customer=acme`` is refused while acme's runs created today (UTC, same owner)
cost $1.00 or more, counting open runs at the most their ``max_output_tokens`` can cost. A
refused run writes nothing and sends nothing. Not the request-rate budget (tests/test_budget.py).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import checks
from django.core.exceptions import ValidationError
from django.db import connection

from runs import services, spend
from runs.models import Message, Run, Thread
from runs.status import Mode

ACME = {"customer": "acme"}
OWNER = "client:default"  # the owner of the ``api`` fixture's token


@pytest.fixture(autouse=True)
def limit(settings) -> None:
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": "1.00", "period": "day"}}


def spent(
    usd: str | None,
    *,
    metadata: dict[str, str] = ACME,
    owner: str = OWNER,
    status: str = "completed",
    model: str = "gpt-4.1-mini",
    **fields: object,
) -> Run:
    """A run that already cost ``usd`` (a row, as the engine leaves it; no limit is checked)."""
    thread = Thread.objects.create(owner=owner)
    cost = Decimal(usd) if usd is not None else None
    return Run.objects.create(
        thread=thread, owner=owner, model=model, metadata=metadata, status=status,
        cost=cost, **fields,
    )  # fmt: skip


def rows() -> tuple[int, int, int]:
    return Run.objects.count(), Thread.objects.count(), Message.objects.count()


def create(**kwargs: object) -> Run:
    return services.create_run("hello", metadata=ACME, owner=OWNER, **kwargs)


def refusal(**kwargs: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        create(**kwargs)
    assert info.value.code == "spend_limit"
    return info.value


@pytest.mark.django_db
def test_a_customer_that_spent_its_limit_gets_no_new_run_and_nothing_is_written(sent_tasks):
    spent("0.60"), spent("0.40")
    before = rows()
    message = refusal().messages[0]
    assert "customer=acme" in message
    assert "$1.00 per day" in message  # the limit and its period
    assert "spent $1.0000" in message  # what was spent
    assert rows() == before
    assert sent_tasks == []  # nothing enqueued: nothing can reach OpenAI


@pytest.mark.django_db
def test_the_api_refuses_it_with_a_400_and_sends_nothing(api, sent_tasks):
    spent("1.00")
    before = Run.objects.count()
    response = api.post("/runs", {"text": "hello", "metadata": ACME})
    assert response.status_code == 400
    assert "spend limit" in response.json()["detail"]
    assert Run.objects.count() == before
    assert sent_tasks == []
    other = api.post("/runs", {"text": "hello", "metadata": {"customer": "beta"}})
    assert other.status_code == 201


@pytest.mark.django_db
def test_a_key_that_reads_as_a_number_is_limited_like_any_other(settings, sent_tasks):
    """PostgreSQL's ``metadata -> 7`` is an array index: such a key once matched no run, so its
    limit never applied (``runs/metadata_query.py``)."""
    settings.RUNS_SPEND_LIMITS = {"7": {"usd": "1.00", "period": "day"}}
    spent("5.00", metadata={"7": "x"})

    assert spend.spent(OWNER, "7", "x", spend.period_start("day")) == Decimal("5.00")
    with pytest.raises(ValidationError):
        services.create_run("hello", metadata={"7": "x"}, owner=OWNER)


@pytest.mark.django_db
def test_below_the_limit_a_run_is_created():
    spent("0.99")
    assert create().metadata == ACME


@pytest.mark.django_db
def test_only_this_owners_runs_of_this_value_in_this_period_count():
    spent("5.00", owner="client:other")  # another client's "acme" is another customer
    spent("5.00", metadata={"customer": "beta"})
    spent("5.00", metadata={"project": "acme"})
    yesterday = spend.period_start("day") - timedelta(seconds=1)
    old = spent("5.00")
    Run.objects.filter(pk=old.pk).update(created_at=yesterday)
    assert create()
    assert services.create_run("no customer", owner=OWNER)  # runs without the key: no limit


@pytest.mark.django_db
def test_an_open_run_counts_at_what_its_output_cap_can_cost():
    # 625,000 output tokens of gpt-4.1-mini at $1.60 per 1M: $1.00 at most.
    spent(None, status="in_progress", max_output_tokens=625_000)
    assert "spent $1.0000" in refusal().messages[0]


@pytest.mark.django_db
def test_an_open_run_without_a_cap_and_an_ended_run_without_a_cost_count_nothing():
    spent(None, status="in_progress")  # no max_output_tokens: 0 (docs/modes.md: the overshoot)
    spent(None, status="failed", max_output_tokens=625_000)  # ended without usage
    assert create()


@pytest.mark.django_db
def test_runs_the_table_cannot_price_count_nothing_rather_than_a_guess():
    """An unlisted model, or a tier the table does not price (priority, scale, auto: the mode
    ``tier``), is treated alike: no estimate while open, no cost once ended. The limit does not
    see them (docs/modes.md, "What counts"); a made-up price would be worse."""
    big_cap = {"max_output_tokens": 625_000}  # $1.00 at gpt-4.1-mini's standard output price
    spent(None, status="in_progress", service_tier="priority", mode=Mode.OTHER_TIER, **big_cap)
    spent(None, status="in_progress", model="my-fine-tune", **big_cap)
    spent(None, status="completed", service_tier="scale", mode=Mode.OTHER_TIER)
    assert spend.spent(OWNER, "customer", "acme", spend.period_start("day")) == 0
    assert create()


@pytest.mark.django_db
def test_a_limit_of_zero_refuses_every_run_of_that_key(settings):
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": 0, "period": "month"}}
    assert "$0 per month" in refusal().messages[0]


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("hour", datetime(2026, 12, 2, 15, tzinfo=UTC)),
        ("day", datetime(2026, 12, 2, tzinfo=UTC)),
        ("week", datetime(2026, 11, 30, tzinfo=UTC)),  # a Monday
        ("month", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_calendar_periods_in_utc(period, start):
    now = datetime(2026, 12, 2, 15, 42, 7, tzinfo=UTC)  # a Wednesday
    assert spend.period_start(period, now) == start


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ([("customer", "1")], "must be a mapping"),
        ({"customer": {"usd": "1"}}, 'exactly the keys "usd" and "period"'),
        ({"customer": {"usd": "1", "period": "year"}}, "hour, day, week, month"),
        ({"customer": {"usd": "-1", "period": "day"}}, "non-negative"),
        ({"customer": {"usd": "ten", "period": "day"}}, "must be a number"),
        ({"": {"usd": "1", "period": "day"}}, "1-64 characters"),
    ],
)
def test_a_bad_runs_spend_limits_is_a_system_check_error(settings, limits, says):
    settings.RUNS_SPEND_LIMITS = limits
    errors = [m for m in checks.run_checks(tags=["runs"]) if m.id == "runs.E012"]
    assert len(errors) == 1 and says in errors[0].msg


# --- through the real worker and the simulator -------------------------------------------------


@pytest.mark.integration
def test_runs_are_tracked_and_priced_until_the_limit_then_refused_with_nothing_sent(
    worker, simulator, wait_terminal, quick_polls, api, settings
):
    """End to end: acme's runs complete through the worker and get their costs from the usage
    the simulator reports, until they reach the limit; then ``create_run`` and ``POST /api/runs``
    refuse the next one, and neither writes a row nor makes a single request to OpenAI."""
    # $1,000 per 1M tokens: a short run costs cents, so the message's four places show it.
    per_token = {"input": "1000", "cached_input": "1000", "output": "1000"}
    settings.RUNS_PRICES = {"gpt-4.1-mini": per_token}

    quick = {"sim_outcome": "completed", "sim_duration_s": "0.3", "sim_queue_s": "0.05"}

    def tracked() -> Run:
        run = services.create_run("hello", metadata={**ACME, **quick}, owner=OWNER)
        services.start(run)
        done = wait_terminal(run.pk)
        assert done.status == "completed" and done.cost, (done.status, done.last_error)
        return done

    first = tracked()
    # The simulator's usage is a function of the prompt, so every run here costs the same; a
    # limit of three runs' worth lets two more start and refuses the fourth.
    limit = first.cost * 3
    settings.RUNS_SPEND_LIMITS = {"customer": {"usd": str(limit), "period": "day"}}
    costs = [first.cost, tracked().cost, tracked().cost]
    assert costs == [first.cost] * 3
    assert spend.spent(OWNER, "customer", "acme", spend.period_start("day")) == limit

    requests_before, rows_before = sum(simulator.stats()["calls"].values()), rows()
    message = refusal().messages[0]
    assert f"customer=acme has spent ${limit:.4f} of its ${limit} per day" in message
    response = api.post("/runs", {"text": "hello", "metadata": ACME})
    assert response.status_code == 400
    assert response.json()["detail"] == message
    time.sleep(1.0)  # room for a stray start (there is none) to reach the simulator
    assert rows() == rows_before
    assert sum(simulator.stats()["calls"].values()) == requests_before


# --- concurrent creates (PostgreSQL) ------------------------------------------------------------


def race(monkeypatch, *, lock: bool) -> list[str]:
    """Two creates for acme at once, each pausing between its sum and its insert."""
    summed = spend.spent

    def slow_sum(*args: object) -> Decimal:
        total = summed(*args)
        time.sleep(0.3)  # the other create sums now, before this one has inserted its run
        return total

    monkeypatch.setattr(spend, "spent", slow_sum)
    if not lock:
        monkeypatch.setattr(spend, "_lock", lambda *args: None)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start() -> None:
        try:
            barrier.wait()
            # 12,500 output tokens at $1.60 per 1M: $0.02, counted while the run is open.
            create(max_output_tokens=12_500)
            outcomes.append("created")
        except ValidationError as exc:
            outcomes.append(exc.code or "")
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_concurrent_creates_at_the_limit_serialize_and_one_is_refused(monkeypatch):
    """$0.99 spent: the first create passes, and the second, waiting on the advisory lock, sees
    the first's open run at its $0.02 estimate ($1.01 >= $1.00) and is refused."""
    spent("0.99")
    assert race(monkeypatch, lock=True) == ["created", "spend_limit"]
    assert spend.spent(OWNER, "customer", "acme", spend.period_start("day")) == Decimal("1.01")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("on_postgres")
def test_without_the_lock_both_would_pass(monkeypatch):
    """Why the lock: both sum $0.99 before either inserts, and both runs start."""
    spent("0.99")
    assert race(monkeypatch, lock=False) == ["created", "created"]
