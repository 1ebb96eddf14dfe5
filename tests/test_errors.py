"""The error policy table, one row per kind of failure (pure: no network)."""

import httpx2
import openai
import pytest

from runs.errors import ThreadBusy, classify

REQUEST = httpx2.Request("GET", "http://sim/v1/responses/resp_1")


def status_error(cls, code: int, headers: dict[str, str] | None = None, body: object = None):
    response = httpx2.Response(code, headers=headers or {}, request=REQUEST)
    return cls(f"error {code}", response=response, body=body)


def test_429_waits_for_retry_after_ms_first_and_up_to_a_fifth_more():
    d = classify(
        status_error(openai.RateLimitError, 429, {"retry-after-ms": "1500", "retry-after": "9"}), 0
    )
    assert (d.retry, d.code) == (True, "rate_limited")
    assert 1.5 <= d.countdown <= 1.8


def test_429_falls_back_to_retry_after_seconds_then_to_backoff():
    d = classify(status_error(openai.RateLimitError, 429, {"retry-after": "3"}), 0)
    assert 3 <= d.countdown <= 3.6
    d = classify(status_error(openai.RateLimitError, 429), 0)
    assert 0.8 <= d.countdown <= 1.2


def test_runs_throttled_together_come_back_spread_out():
    """Every waiting run hears the same Retry-After: taken as is, they all came back at once."""
    waits = {
        classify(status_error(openai.RateLimitError, 429, {"retry-after": "10"}), 0).countdown
        for _ in range(50)
    }
    assert len(waits) > 40 and min(waits) >= 10 and max(waits) <= 12


@pytest.mark.parametrize(
    "waiting",
    [
        status_error(openai.RateLimitError, 429, {"retry-after": "1"}),
        ThreadBusy("thread thread_1 is running run_2"),
    ],
)
def test_waiting_for_someone_else_gets_four_times_the_attempts_of_other_errors(waiting):
    assert classify(waiting, 8, max_retries=8).retry
    assert classify(waiting, 31, max_retries=8).retry
    assert not classify(waiting, 32, max_retries=8).retry
    # One count of errors in a row: a 5xx after twelve 429s is the ninth error and more.
    assert not classify(status_error(openai.InternalServerError, 500), 12, max_retries=8).retry


@pytest.mark.parametrize(
    "outage",
    [
        status_error(openai.InternalServerError, 500),
        status_error(openai.APIStatusError, 408),
        openai.APIConnectionError(request=httpx2.Request("GET", "http://api/v1/responses/r")),
    ],
)
def test_a_read_waits_out_an_outage_four_times_as_long_as_a_create(outage):
    """The run goes on at OpenAI while its reads fail: giving up after a create's 8 tries (about
    3 minutes) failed, and cancelled, every run in flight during a 5-minute incident."""
    assert not classify(outage, 8, max_retries=8).retry  # a create: each try may be sent twice
    assert classify(outage, 31, max_retries=8, reading=True).retry
    assert not classify(outage, 32, max_retries=8, reading=True).retry


def test_an_unexpected_error_in_a_read_gets_no_more_tries_than_elsewhere():
    """More likely our bug than the API's outage: it will not fix itself by waiting."""
    assert not classify(KeyError("output"), 8, max_retries=8, reading=True).retry


def test_an_account_without_credit_fails_a_create_at_once_but_never_a_read():
    """Out of credit, a create or a submit cannot succeed; a response already running may still
    end, and giving up its retrieve would cancel it."""
    no_credit = status_error(openai.RateLimitError, 429, body={"code": "insufficient_quota"})
    spend = classify(no_credit, 0, 8)
    read = classify(no_credit, 0, 8, reading=True)
    assert (spend.retry, spend.code) == (False, "insufficient_quota")
    assert (read.retry, read.code) == (True, "rate_limited") and 0.8 <= read.countdown <= 1.2


def test_a_silly_retry_after_is_capped():
    d = classify(status_error(openai.RateLimitError, 429, {"retry-after": "999999"}), 0)
    assert d.countdown == 300


@pytest.mark.parametrize(("status", "code"), [(408, "http_408"), (409, "conflict")])
def test_a_request_timeout_or_a_conflict_is_retried_as_the_sdk_would(status, code):
    d = classify(status_error(openai.APIStatusError, status), 0)
    assert (d.retry, d.code) == (True, code) and d.countdown <= 1.2


@pytest.mark.parametrize("attempt", [0, 3, 10])
def test_5xx_retries_with_capped_backoff(attempt):
    d = classify(status_error(openai.InternalServerError, 503), attempt)
    assert d.retry and d.code == "http_503"
    assert d.countdown <= 60 * 1.2


@pytest.mark.parametrize(
    ("cls", "code"), [(openai.AuthenticationError, 401), (openai.PermissionDeniedError, 403)]
)
def test_credentials_problems_fail_at_once(cls, code):
    d = classify(status_error(cls, code), 0)
    assert not d.retry
    assert "credentials" in d.message


def test_404_fails_with_a_clear_message():
    d = classify(status_error(openai.NotFoundError, 404), 0)
    assert (d.retry, d.code) == (False, "not_found")
    assert "not found" in d.message


def test_400_fails_with_the_servers_message():
    d = classify(status_error(openai.BadRequestError, 400), 0)
    assert (d.retry, d.message) == (False, "error 400")


def test_a_timeout_retries_and_says_the_outcome_is_unknown():
    d = classify(openai.APITimeoutError(request=REQUEST), 0)
    assert d.retry and d.outcome_unknown


def test_a_refused_connection_never_sent_the_request():
    try:
        raise openai.APIConnectionError(request=REQUEST) from httpx2.ConnectError("refused")
    except openai.APIConnectionError as exc:
        d = classify(exc, 0)
    assert d.retry and not d.outcome_unknown


def test_a_broken_connection_may_have_sent_it():
    try:
        raise openai.APIConnectionError(request=REQUEST) from httpx2.ReadError("reset")
    except openai.APIConnectionError as exc:
        d = classify(exc, 0)
    assert d.retry and d.outcome_unknown


def test_anything_unexpected_is_retried_boundedly():
    d = classify(KeyError("surprise"), 2)
    assert d.retry and d.code == "unexpected" and "KeyError" in d.message


def test_a_key_quoted_in_the_servers_message_is_not_kept():
    """The message is stored on the run, which the API, the live stream and the admin show."""
    response = httpx2.Response(401, request=REQUEST)
    exc = openai.AuthenticationError(
        "Incorrect API key provided: sk-proj-abcdef1234567890abcdef", response=response, body=None
    )
    d = classify(exc, 0)
    assert "sk-proj-abcdef1234567890abcdef" not in d.message
    assert "[redacted]" in d.message and "API key provided" in d.message
