"""The price table (runs/pricing.py): usage -> USD per model and mode, and nothing guessed.

gpt-4.1-mini, the simulator's default model, is $0.40 input / $0.10 cached input / $1.60 output
per 1M tokens. The usage below is 1,000,000 input tokens of which 200,000 cached and 500,000
output, so standard processing costs 0.8 x 0.40 + 0.2 x 0.10 + 0.5 x 1.60 = $1.14.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import checks

from runs import options, pricing
from runs.backends.base import RemoteState
from runs.engine.answers import move_to, total_usage
from runs.models import Run
from runs.status import Mode

RESPONSES_USAGE = {
    "input_tokens": 1_000_000,
    "input_tokens_details": {"cached_tokens": 200_000},
    "output_tokens": 500_000,
    "output_tokens_details": {"reasoning_tokens": 300_000},  # inside output_tokens already
    "total_tokens": 1_500_000,
}
CHAT_USAGE = {
    "prompt_tokens": 1_000_000,
    "prompt_tokens_details": {"cached_tokens": 200_000},
    "completion_tokens": 500_000,
    "total_tokens": 1_500_000,
}
#: Pins the simulator's outcome (by default 10 % of its responses fail, are cut or cancelled).
COMPLETES = {"sim_outcome": "completed", "sim_duration_s": "0.3", "sim_queue_s": "0.05"}


@pytest.mark.parametrize(
    ("mode", "usd"),
    [
        (Mode.STANDARD, "1.14"),
        (Mode.FLEX, "0.57"),  # Batch API rates: half
        (Mode.BATCH, "0.57"),  # half of standard
        (Mode.WINDOW_2H, "0.798"),  # 30 % below standard
        (Mode.WINDOW_8H, "0.684"),  # 40 % below standard
    ],
)
def test_each_mode_has_its_discount(mode, usd):
    assert pricing.cost_of("gpt-4.1-mini", RESPONSES_USAGE, mode) == Decimal(usd)


def test_both_usage_shapes_price_the_same():
    """Responses (input/output tokens) and Assistants or chat (prompt/completion tokens)."""
    responses = pricing.cost_of("gpt-4.1-mini", RESPONSES_USAGE, Mode.STANDARD)
    chat = pricing.cost_of("gpt-4.1-mini", CHAT_USAGE, Mode.STANDARD)
    assert responses == chat == Decimal("1.14")
    assert pricing.cost_of(
        "gpt-4.1-mini", {"prompt_tokens": 10, "completion_tokens": 5}, "standard"
    )


def test_costs_are_decimals_with_eight_places():
    cost = pricing.cost_of("gpt-4.1-nano", {"input_tokens": 7, "output_tokens": 3}, "batch")
    # (7 x 0.10 + 3 x 0.40) / 1M / 2 = 0.00000095
    assert cost == Decimal("0.00000095")
    assert cost.as_tuple().exponent == -8


def test_cached_tokens_never_exceed_the_input():
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 50}, "output_tokens": 0}
    assert pricing.cost_of("gpt-4.1-mini", usage, "standard") == Decimal("0.00000100")


@pytest.mark.parametrize(
    ("model", "listed_as"),
    [
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),  # a dated snapshot
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # a snapshot with a price of its own
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-4-0613", None),  # the snapshot of a model the table does not list
        ("gpt-5-pro", None),  # not gpt-5: a different, dearer model
        ("gpt-4o-mini-tts", None),  # not gpt-4o-mini
        ("my-fine-tune", None),
        ("", None),
    ],
)
def test_models_match_exactly_or_as_dated_snapshots_never_by_guess(model, listed_as):
    expected = pricing.PRICES[listed_as] if listed_as else None
    assert pricing.price_for(model) == expected


def test_an_unknown_model_or_no_usage_has_no_cost():
    assert pricing.cost_of("my-fine-tune", RESPONSES_USAGE, "standard") is None
    assert pricing.cost_of("gpt-4.1-mini", None, "standard") is None
    assert pricing.cost_of("gpt-4.1-mini", {}, "standard") is None
    assert pricing.cost_of("gpt-4.1-mini", RESPONSES_USAGE, "priority") is None  # unknown mode
    malformed = {"input_tokens": "many", "output_tokens": 1}
    assert pricing.cost_of("gpt-4.1-mini", malformed, "standard") is None


@pytest.mark.parametrize("tier", ["priority", "scale", "fast", "ultrafast", "auto"])
def test_a_tier_the_table_does_not_price_has_no_cost_never_standard_rates(tier):
    """A priority run priced at standard rates would be a made-up number: its mode is
    ``tier`` (``options.mode_of``) and its cost null, like an unknown model's."""
    mode = options.mode_of("soonest", tier)
    assert mode == Mode.OTHER_TIER
    assert pricing.cost_of("gpt-4.1-mini", RESPONSES_USAGE, mode) is None


def test_runs_prices_adds_and_replaces_entries(settings):
    settings.RUNS_PRICES = {
        "gpt-4.1-mini": {"input": "1", "cached_input": "0", "output": 2},
        "my-fine-tune": {"input": 3.0, "cached_input": "1.5", "output": "12"},
    }
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert pricing.cost_of("gpt-4.1-mini", usage, "standard") == Decimal("3")
    assert pricing.cost_of("my-fine-tune-2025-01-01", usage, "batch") == Decimal("7.5")
    assert pricing.cost_of("gpt-4o", usage, "standard") == Decimal("12.5")  # the rest stays


@pytest.mark.parametrize(
    ("prices", "says"),
    [
        ([("gpt-x", 1)], "must be a mapping"),
        ({"gpt-x": {"input": "1", "output": "2"}}, "exactly the keys"),
        ({"gpt-x": {"input": "1", "cached_input": "0", "output": "-2"}}, "non-negative"),
        ({"gpt-x": {"input": "one", "cached_input": "0", "output": "2"}}, "must be a number"),
        ({"gpt-x": {"input": True, "cached_input": "0", "output": "2"}}, "numeric string"),
        ({"gpt-x": {"input": "NaN", "cached_input": "0", "output": "2"}}, "non-negative"),
    ],
)
def test_a_bad_runs_prices_is_a_system_check_error_and_prices_nothing(settings, prices, says):
    settings.RUNS_PRICES = prices
    errors = [m for m in checks.run_checks(tags=["runs"]) if m.id == "runs.E011"]
    assert len(errors) == 1 and says in errors[0].msg
    # The engine still ends the run: no cost rather than an exception in the writer's path.
    assert pricing.cost_of("gpt-4.1-mini", RESPONSES_USAGE, "standard") is None


def test_the_shipped_table_says_where_it_comes_from():
    assert pricing.PRICES_SOURCE.startswith("https://openai.com/")
    assert pricing.PRICES_TAKEN
    # Every mode is priced but the tiers the table does not model.
    assert set(pricing.MODE_FACTORS) == set(Mode.values) - {Mode.OTHER_TIER}
    assert {"gpt-5", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini"} <= set(
        pricing.PRICES
    )


@pytest.mark.integration
def test_a_completed_run_gets_its_cost(worker, simulator, wait_terminal, quick_polls):
    """End to end: the simulator reports usage, the terminal move saves the cost with it."""
    from runs import services

    run = services.create_run("What is 2 + 2?", model="gpt-4.1-mini", metadata=COMPLETES)
    services.start(run)
    done = wait_terminal(run.pk)
    assert done.status == "completed" and done.usage
    assert done.cost is not None and done.cost > 0
    assert done.cost == pricing.cost_of("gpt-4.1-mini", done.usage, done.mode)
    assert Run.objects.get(pk=run.pk).mode == Mode.STANDARD


@pytest.mark.integration
def test_a_priority_run_completes_with_its_usage_and_no_cost(
    worker, simulator, wait_terminal, quick_polls
):
    """End to end: the usage is kept, the cost stays null rather than a standard-rate guess."""
    from runs import services

    run = services.create_run(
        "What is 2 + 2?", model="gpt-4.1-mini", service_tier="priority", metadata=COMPLETES
    )
    assert run.mode == Mode.OTHER_TIER
    services.start(run)
    done = wait_terminal(run.pk)
    assert done.status == "completed" and done.usage
    assert done.cost is None


# --- tool rounds: every response the run made is priced -------------------------------------------

ROUND = {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 10}


def answer(remote_id: str, status: str, usage: dict | None) -> RemoteState:
    return RemoteState(remote_id=remote_id, status=status, remote_status=status, usage=usage)


@pytest.mark.django_db
def test_each_round_of_a_responses_run_is_priced_with_its_last_response(make_run):
    """The response that asked for tools ends there; the outputs start a new one. Its usage is
    kept by response id on the move to requires_action, and the end prices them all."""
    run = make_run("in_progress", remote_id="resp_1", backend="responses")
    asked = move_to(run, answer("resp_1", "requires_action", ROUND), "poll")
    assert asked.fields["round_usage"] == {"resp_1": ROUND}
    run.round_usage = {"resp_1": ROUND, "resp_2": ROUND}  # two rounds, then the answer
    done = move_to(run, answer("resp_3", "completed", ROUND), "poll")
    assert done.fields["usage"] == {
        "input_tokens": 300,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 30,
    }
    assert done.fields["cost"] == 3 * pricing.cost_of(run.model, ROUND, run.mode)
    # The same response seen again (a manual wait, a lagging answer) is counted once.
    again = move_to(run, answer("resp_2", "cancelled", ROUND), "user")
    assert again.fields["cost"] == 2 * pricing.cost_of(run.model, ROUND, run.mode)


@pytest.mark.django_db
def test_an_assistants_run_is_priced_on_its_own_usage_which_covers_every_round(make_run):
    run = make_run("in_progress", remote_id="run_1", backend="assistants")
    asked = move_to(run, answer("run_1", "requires_action", CHAT_USAGE), "poll")
    assert "round_usage" not in asked.fields
    done = move_to(run, answer("run_1", "completed", CHAT_USAGE), "poll")
    assert done.fields["usage"] == CHAT_USAGE


def test_usages_add_up_key_by_key():
    assert total_usage([RESPONSES_USAGE, None, RESPONSES_USAGE]) == {
        "input_tokens": 2_000_000,
        "input_tokens_details": {"cached_tokens": 400_000},
        "output_tokens": 1_000_000,
        "output_tokens_details": {"reasoning_tokens": 600_000},
        "total_tokens": 3_000_000,
    }
    assert total_usage([None]) is None


def test_a_count_a_server_left_out_in_one_round_adds_up_as_zero():
    """The SDK dumps a required field a server left out as None; summing the rounds must not
    raise in the tick that does it, in either order."""
    partial = {"input_tokens": 10, "input_tokens_details": {"cache_write_tokens": None}}
    full = {"input_tokens": 5, "input_tokens_details": {"cache_write_tokens": 3}}
    expected = {"input_tokens": 15, "input_tokens_details": {"cache_write_tokens": 3}}
    assert total_usage([partial, full]) == expected
    assert total_usage([full, partial]) == expected
