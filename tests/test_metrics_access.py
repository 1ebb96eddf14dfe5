"""Who may read ``/metrics``: loopback by default, a bearer token from anywhere, nobody else.

The Django test client's requests come from 127.0.0.1 unless ``REMOTE_ADDR`` says otherwise.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import checks, metrics
from runs.metrics_access import address_allowed

OUTSIDE = "203.0.113.7"  # TEST-NET-3: an address on no allow-list


@pytest.fixture(autouse=True)
def fresh_counts():
    metrics._COUNTS.forget()


def scrape(client, **extra: str):
    return client.get("/metrics", **extra)


@pytest.mark.django_db
def test_by_default_the_same_host_may_scrape_with_no_configuration(client):
    response = scrape(client)
    assert response.status_code == 200
    assert b"runs_in_status" in response.content


@pytest.mark.django_db
def test_by_default_another_host_is_refused_and_costs_no_query(client):
    with CaptureQueriesContext(connection) as queries:
        response = scrape(client, REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert b"runs_in_status" not in response.content
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_a_request_through_a_proxy_is_not_loopback_however_it_arrives(client):
    """A reverse proxy on the same host connects from 127.0.0.1 for every visitor."""
    assert scrape(client, HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 403
    assert scrape(client, HTTP_FORWARDED=f"for={OUTSIDE}").status_code == 403
    assert scrape(client, HTTP_X_REAL_IP=OUTSIDE).status_code == 403


@pytest.mark.django_db
def test_the_token_opens_it_from_anywhere_and_a_wrong_one_from_nowhere(client, settings):
    settings.RUNS_METRICS_TOKEN = "scrape-me-7f3a"
    good = {"HTTP_AUTHORIZATION": "Bearer scrape-me-7f3a"}
    assert scrape(client, REMOTE_ADDR=OUTSIDE, **good).status_code == 200
    assert scrape(client, HTTP_X_FORWARDED_FOR=OUTSIDE, **good).status_code == 200
    wrong = {"HTTP_AUTHORIZATION": "Bearer scrape-me-0000"}
    assert scrape(client, REMOTE_ADDR=OUTSIDE, **wrong).status_code == 403
    # Even from loopback: a scraper with a stale token should fail loudly, not by luck pass.
    assert scrape(client, **wrong).status_code == 403
    assert scrape(client, REMOTE_ADDR=OUTSIDE).status_code == 403  # no token at all


@pytest.mark.django_db
def test_no_token_configured_means_no_token_opens_it(client, settings):
    settings.RUNS_METRICS_TOKEN = ""
    for presented in ("Bearer ", "Bearer anything"):
        response = scrape(client, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=presented)
        assert response.status_code == 403


@pytest.mark.django_db
def test_an_allow_list_lets_a_network_in_and_can_shut_loopback_out(client, settings):
    settings.RUNS_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert scrape(client, REMOTE_ADDR="10.20.30.40").status_code == 200
    assert scrape(client).status_code == 403  # loopback is no longer on the list
    settings.RUNS_METRICS_ALLOWED_IPS = []
    assert scrape(client, REMOTE_ADDR="10.20.30.40").status_code == 403


@pytest.mark.django_db
def test_behind_a_same_host_proxy_that_adds_no_header_only_token_and_empty_list_close_it(
    client, settings
):
    """docs/operations.md, "Who may scrape /metrics": such a proxy's visitors look local."""
    visitor_via_silent_proxy = {"REMOTE_ADDR": "127.0.0.1"}  # no forwarding header at all
    assert scrape(client, **visitor_via_silent_proxy).status_code == 200  # why the docs warn

    settings.RUNS_METRICS_TOKEN = "scrape-me-7f3a"
    settings.RUNS_METRICS_ALLOWED_IPS = ""  # as RUNS_METRICS_ALLOWED_IPS= in the environment

    assert scrape(client, **visitor_via_silent_proxy).status_code == 403
    prometheus = {"HTTP_AUTHORIZATION": "Bearer scrape-me-7f3a", **visitor_via_silent_proxy}
    assert scrape(client, **prometheus).status_code == 200


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 on a dual-stack socket
        ("192.168.1.5", False),
        ("::ffff:192.168.1.5", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_the_default_list_is_loopback_only(address, allowed):
    assert address_allowed(address, ["127.0.0.0/8", "::1/128"]) is allowed


def test_a_bad_allow_list_entry_is_a_configuration_error_that_names_it():
    with pytest.raises(ImproperlyConfigured, match="'10.0.0.0/33'"):
        address_allowed("10.0.0.1", ["127.0.0.0/8", "10.0.0.0/33"])


def test_one_comma_separated_string_is_a_list_too():
    assert address_allowed("10.1.1.1", "127.0.0.1, 10.0.0.0/8")
    assert not address_allowed("10.1.1.1", "")


def test_manage_py_check_reports_a_bad_entry_before_any_scrape(settings):
    settings.RUNS_METRICS_ALLOWED_IPS = ["127.0.0.1", "10.0.0.0/33"]
    errors = checks.check_metrics_access()
    assert [e.id for e in errors] == ["runs.E201"]
    assert "'10.0.0.0/33'" in errors[0].msg
    settings.RUNS_METRICS_ALLOWED_IPS = ["127.0.0.1", "10.0.0.0/8"]
    assert checks.check_metrics_access() == []
