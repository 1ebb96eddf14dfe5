"""Cost totals: ``GET /api/costs`` (one client's runs only), the admin's Costs page (every run)
and ``/metrics`` (by model and mode, never by customer)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from runs import metrics
from runs.api.schemas import usd
from runs.models import Run, Thread

pytestmark = pytest.mark.django_db

TOKENS = ["acme:operate:tok-acme", "beta:operate:tok-beta", "audit:read:tok-audit"]


@pytest.fixture(autouse=True)
def clients(settings) -> None:
    settings.RUNS_API_TOKENS = TOKENS
    caches["default"].clear()  # the throttles' windows


def run(owner: str, usd: str | None, *, model: str = "gpt-4.1-mini", mode: str = "standard",
        status: str = "completed", **metadata: str) -> Run:  # fmt: skip
    thread = Thread.objects.create(owner=owner)
    cost = None if usd is None else Decimal(usd)
    return Run.objects.create(
        thread=thread, owner=owner, model=model, mode=mode, status=status, cost=cost,
        metadata=metadata,
    )  # fmt: skip


def costs(client, token: str, **params: object) -> dict:
    response = client.get("/api/costs", params, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def books() -> None:
    """acme's runs for two customers and one without; beta's runs for the same customer names."""
    run("client:acme", "0.50", customer="c1")
    run("client:acme", "0.25", mode="batch", customer="c1")
    run("client:acme", "1.00", model="gpt-4o", mode="flex", customer="c2")
    run("client:acme", None, status="in_progress", customer="c2")  # no cost yet
    run("client:acme", "0.10")  # no customer
    run("client:beta", "99.00", customer="c1")
    run("client:beta", "99.00", customer="c2")


@pytest.mark.usefixtures("books")
def test_totals_by_customer_count_only_the_callers_own_runs(client):
    body = costs(client, "tok-acme", key="customer")
    assert body["currency"] == "USD"
    assert body["total"] == {"runs": 5, "priced": 4, "cost": "1.85000000"}
    values = {v["value"]: (v["runs"], v["priced"], v["cost"]) for v in body["values"]}
    assert values == {
        "c2": (2, 1, "1.00000000"),
        "c1": (2, 2, "0.75000000"),
        None: (1, 1, "0.10000000"),  # runs without the key
    }
    assert [v["value"] for v in body["values"]] == ["c2", "c1", None]  # dearest first
    assert body["more"] is False
    beta = costs(client, "tok-beta", key="customer")
    assert beta["total"]["cost"] == "198.00000000"  # and never acme's


@pytest.mark.usefixtures("books")
def test_breakdowns_by_model_and_by_mode(client):
    body = costs(client, "tok-acme")
    by_model = {m["model"]: (m["runs"], m["cost"]) for m in body["by_model"]}
    assert by_model == {"gpt-4.1-mini": (4, "0.85000000"), "gpt-4o": (1, "1.00000000")}
    by_mode = {m["mode"]: (m["runs"], m["cost"]) for m in body["by_mode"]}
    assert by_mode == {
        "standard": (3, "0.60000000"),
        "batch": (1, "0.25000000"),
        "flex": (1, "1.00000000"),
    }
    assert body["values"] == []  # no key asked for


@pytest.mark.usefixtures("books")
def test_a_read_token_sees_its_own_clients_costs_only(client):
    assert costs(client, "tok-audit")["total"] == {"runs": 0, "priced": 0, "cost": None}


def test_the_period_is_on_created_at_and_half_open(client):
    old = run("client:acme", "2.00", customer="c1")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    run("client:acme", "0.50", customer="c1")
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert costs(client, "tok-acme", since=since)["total"]["cost"] == "0.50000000"
    assert costs(client, "tok-acme", until=since)["total"]["cost"] == "2.00000000"
    assert costs(client, "tok-acme")["total"]["cost"] == "2.50000000"


def test_limit_keeps_the_dearest_values(client):
    for n in range(5):
        run("client:acme", f"0.0{n + 1}", customer=f"c{n}")
    run("client:acme", "0.05", customer="c0")  # c0: 0.01 + 0.05, the dearest in sum
    body = costs(client, "tok-acme", key="customer", limit=2)
    assert [(v["value"], v["cost"]) for v in body["values"]] == [
        ("c0", "0.06000000"),
        ("c4", "0.05000000"),
    ]
    assert body["more"] is True


@pytest.mark.parametrize("key", ['we"ird.key', "7", "-1"])  # "7": a key, not an array index
def test_a_key_with_any_characters_works(client, key):
    run("client:acme", "0.30", **{key: "x"})
    body = costs(client, "tok-acme", key=key)
    assert body["values"][0] == {"value": "x", "runs": 1, "priced": 1, "cost": "0.30000000"}


def test_without_a_token_it_is_a_401_and_bad_parameters_a_422(client):
    assert client.get("/api/costs").status_code == 401
    headers = {"Authorization": "Bearer tok-acme"}
    assert client.get("/api/costs", {"limit": 0}, headers=headers).status_code == 422
    assert client.get("/api/costs", {"since": "yesterday"}, headers=headers).status_code == 422


# --- the admin's Costs page -------------------------------------------------------------------


@pytest.mark.usefixtures("books")
def test_the_admin_costs_page_totals_every_owner_by_the_key_typed(admin_client):
    url = reverse("admin:runs_run_costs")
    assert url in admin_client.get(reverse("admin:runs_run_changelist")).content.decode()
    page = admin_client.get(url, {"key": "customer"}).content.decode()
    assert "By customer" in page
    assert "99.75000000" in page  # c1: acme's 0.75 and beta's 99, operators see all
    narrowed = admin_client.get(url, {"key": "customer", "owner": "client:acme"}).content.decode()
    assert "0.75000000" in narrowed and "99.00000000" not in narrowed


def test_the_costs_page_needs_permission_to_view_runs(client, django_user_model):
    staff = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:runs_run_costs")).status_code == 403


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_total_cost_by_model_and_mode_without_customer_labels(client, books):
    metrics._COUNTS.forget()
    text = client.get("/metrics").content.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("runs_cost_usd", "runs_with_cost"))
    }
    model_mode = (("mode", "standard"), ("model", "gpt-4.1-mini"))
    assert samples[("runs_cost_usd_total", model_mode)] == pytest.approx(198.60)  # every owner
    assert samples[("runs_with_cost", model_mode)] == 4  # the open run has no cost yet
    assert samples[("runs_cost_usd_total", (("mode", "flex"), ("model", "gpt-4o")))] == 1.0
    assert {label for key in samples for label, _ in key[1]} == {"model", "mode"}
    metrics._COUNTS.forget()


# --- how a cost is written -----------------------------------------------------------------------


def test_a_tiny_cost_is_a_plain_decimal_string_never_scientific(client, capsys):
    """``str(Decimal)`` writes 5e-7 USD as "5.0E-7" and zero as "0E-8": a client parsing money
    must get "0.00000050" and "0.00000000" from every place a cost is written."""
    tiny = run("client:acme", "0.0000005", customer="c1")
    free = run("client:acme", "0", customer="c2")
    tiny.refresh_from_db()
    free.refresh_from_db()
    assert (str(tiny.cost), str(free.cost)) == ("5.0E-7", "0E-8")  # what str() would give
    body = costs(client, "tok-acme", key="customer")
    assert body["total"]["cost"] == "0.00000050"
    assert {v["value"]: v["cost"] for v in body["values"]} == {
        "c1": "0.00000050",
        "c2": "0.00000000",
    }
    headers = {"Authorization": "Bearer tok-acme"}
    shown = client.get(f"/api/runs/{tiny.pk}", headers=headers).json()
    assert shown["cost"] == "0.00000050"
    call_command("runstatus", str(free.pk))
    assert "cost $0.00000000" in capsys.readouterr().out


def test_usd_formats_what_a_row_or_a_sum_holds():
    assert usd(None) is None
    assert usd(Decimal("5.0E-7")) == "0.00000050"
    assert usd(Decimal("0E-8")) == "0.00000000"
    assert usd(Decimal("123.45000000")) == "123.45000000"


def test_the_admin_costs_page_shows_the_current_month_unless_asked(admin_client):
    """No day given: the current month (UTC), so a visit never groups the whole table."""
    old = run("client:acme", "2.00")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    run("client:acme", "0.50")
    url = reverse("admin:runs_run_costs")
    first = timezone.now().date().replace(day=1)
    for page in (admin_client.get(url), admin_client.get(url, {"key": "customer"})):
        html = page.content.decode()
        assert "0.50000000" in html and "2.50000000" not in html
    since = (timezone.now() - timedelta(days=60)).date().isoformat()
    everything = admin_client.get(url, {"since": since}).content.decode()
    assert "2.50000000" in everything
    assert first.isoformat() in admin_client.get(url).content.decode()  # the form says so


@pytest.mark.parametrize(
    "query", [{"until": "9999-12-31"}, {"since": "0001-01-01", "until": "9999-12-31"}]
)
def test_the_admin_costs_page_takes_the_calendars_first_and_last_day(admin_client, query):
    """The last day has no next midnight to stop before: it means no end, not a 500."""
    run("client:acme", "0.50")
    page = admin_client.get(reverse("admin:runs_run_costs"), query)
    assert page.status_code == 200
    assert "0.50000000" in page.content.decode()
