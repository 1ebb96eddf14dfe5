"""Who may see and do what through the JSON API: owners, scopes, allow-lists and throttling.

Two clients, ``acme`` and ``beta``, each with an ``operate`` token; ``audit`` with a ``read`` one;
``narrow`` allowed one model and one tool. Each client sees only the runs and threads it owns;
another client's id is a 404 that writes nothing, exactly like an id that does not exist.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse

from runs import services
from runs.api import throttles
from runs.api.tokens import ApiClient, client_for_token, configured_clients
from runs.models import Message, Run, RunEvent, Thread, ToolCall
from tests.api_client import As

pytestmark = pytest.mark.django_db

TOKENS = [
    "acme:operate:tok-acme",
    "beta:operate:tok-beta",
    "audit:read:tok-audit:with:colons",
    {"client": "narrow", "token": "tok-narrow", "models": ["m-ok"], "tools": ["lookup"]},
]


@pytest.fixture(autouse=True)
def clients(settings) -> None:
    settings.RUNS_API_TOKENS = TOKENS
    caches["default"].clear()  # the throttles' history: every test starts with a full allowance


@pytest.fixture
def audit(client) -> As:
    return As(client, "tok-audit:with:colons")


@pytest.fixture
def acmes_run(make_run) -> Run:
    """A run of acme's waiting for a manual tool output: every operation has something to do."""
    run = make_run("requires_action", owner="client:acme", remote_id="resp_1")
    Thread.objects.filter(pk=run.thread_id).update(owner="client:acme")
    ToolCall.objects.create(run=run, call_id="call_1", name="ask", state="manual")
    return run


def everything() -> tuple[object, ...]:
    """Every row and every field an API write could change."""
    return (
        list(Thread.objects.values()),
        list(Message.objects.values()),
        list(Run.objects.values()),
        list(RunEvent.objects.values()),
        list(ToolCall.objects.values()),
    )


# --- owners -------------------------------------------------------------------------------------


def test_a_client_owns_what_it_creates_and_lists_only_its_own(acme, beta):
    mine = acme.post("/runs", {"text": "hello"}).json()
    theirs = beta.post("/runs", {"text": "hello"}).json()

    assert Run.objects.get(pk=mine["id"]).owner == "client:acme"
    assert Thread.objects.get(pk=mine["thread_id"]).owner == "client:acme"
    assert [r["id"] for r in acme.get("/runs").json()["items"]] == [mine["id"]]
    assert [r["id"] for r in beta.get("/runs").json()["items"]] == [theirs["id"]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/runs/{run}", None),
        ("post", "/runs/{run}/cancel", None),
        ("post", "/runs/{run}/retry", None),
        (
            "post",
            "/runs/{run}/tool_outputs",
            {"tool_outputs": [{"call_id": "call_1", "output": "x"}]},
        ),
        ("get", "/threads/{thread}", None),
        ("post", "/threads/{thread}/messages", {"content": "let me in"}),
        ("post", "/runs", {"thread_id": "{thread}"}),
        ("post", "/runs", {"thread_id": "{thread}", "text": "and read the answer"}),
    ],
)
def test_another_clients_run_or_thread_is_a_404_and_nothing_is_written(
    beta, acmes_run, method, path, body
):
    ids = {"run": acmes_run.pk, "thread": acmes_run.thread_id}
    if body and body.get("thread_id"):
        body = {**body, "thread_id": acmes_run.thread_id}
    before = everything()

    response = getattr(beta, method)(path.format(**ids), *([body] if method == "post" else []))

    assert response.status_code == 404, response.content
    assert response.json() == {"detail": "Not Found"}
    assert everything() == before


def test_another_clients_runs_are_not_listed_under_any_filter(beta, acmes_run):
    for params in ({}, {"thread_id": acmes_run.thread_id}, {"status": "requires_action"}):
        assert beta.get("/runs", **params).json()["items"] == []


def test_runs_from_before_owners_belong_to_no_client(acme, make_run):
    legacy = make_run("completed")  # blank owner, as every row the migration found
    assert legacy.owner == ""
    assert acme.get(f"/runs/{legacy.pk}").status_code == 404
    assert acme.get("/runs").json()["items"] == []


def test_a_retry_belongs_to_the_owner_of_the_run_it_retries(acme, make_run):
    old = make_run("failed", owner="client:acme")
    new = acme.post(f"/runs/{old.pk}/retry").json()
    assert Run.objects.get(pk=new["id"]).owner == "client:acme"
    assert Thread.objects.get(pk=new["thread_id"]).owner == "client:acme"


def test_code_gives_runs_to_users_and_never_onto_another_owners_thread(django_user_model):
    user = django_user_model.objects.create_user("ann")
    run = services.create_run("hello", owner=services.user_owner(user))
    assert (run.owner, run.thread.owner) == (f"user:{user.pk}", f"user:{user.pk}")
    assert services.create_run(thread=run.thread).owner == run.owner  # inherited
    before = everything()
    with pytest.raises(ValidationError, match=f"thread {run.thread_id} belongs to another owner"):
        services.create_run("mine now", thread=run.thread, owner="client:acme")
    assert everything() == before


# --- scopes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/runs", {"text": "hello"}),
        ("/threads", {}),
        ("/threads/{thread}/messages", {"content": "hi"}),
        ("/runs/{run}/cancel", None),
        ("/runs/{run}/retry", None),
        ("/runs/{run}/tool_outputs", {"tool_outputs": [{"call_id": "call_1", "output": "x"}]}),
    ],
)
def test_a_read_token_may_not_write(audit, make_run, path, body):
    run = make_run("requires_action", owner="client:audit")
    ToolCall.objects.create(run=run, call_id="call_1", name="ask", state="manual")
    before = everything()

    response = audit.post(path.format(run=run.pk, thread=run.thread_id), body)

    assert response.status_code == 403
    assert "may only read" in response.json()["detail"]
    assert everything() == before


def test_a_read_token_reads_its_clients_runs(audit, make_run):
    run = make_run("completed", owner="client:audit")
    assert audit.get(f"/runs/{run.pk}").json()["status"] == "completed"
    assert [r["id"] for r in audit.get("/runs").json()["items"]] == [run.pk]


# --- allow-lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"text": "hi", "model": "m-expensive"}, "may not use model 'm-expensive'; allowed: m-ok"),
        ({"text": "hi"}, "may not use model 'gpt-4.1-mini'"),  # the default model counts too
        ({"text": "hi", "model": "m-ok", "tools": ["lookup", "add"]}, "may not use tools ['add']"),
    ],
)
def test_allow_lists_refuse_other_models_and_tools(client, body, says):
    before = everything()
    response = As(client, "tok-narrow").post("/runs", body)
    assert response.status_code == 403
    assert says in response.json()["detail"]
    assert everything() == before


def test_allow_lists_let_their_own_models_and_tools_through(client, register_tool):
    register_tool(lambda query: query, name="lookup")
    response = As(client, "tok-narrow").post(
        "/runs", {"text": "hi", "model": "m-ok", "tools": ["lookup"]}
    )
    assert response.status_code == 201, response.content


def test_a_retry_is_checked_against_the_allow_list_of_today(client, make_run):
    old = make_run("failed", owner="client:narrow")  # the default model: not allowed any more
    before = everything()
    response = As(client, "tok-narrow").post(f"/runs/{old.pk}/retry")
    assert response.status_code == 403
    assert everything() == before


# --- throttling ---------------------------------------------------------------------------------


def test_starts_over_the_rate_get_a_429_with_retry_after(acme, beta, settings):
    settings.RUNS_API_THROTTLE_RATES = {"start": "2/min"}
    assert [acme.post("/runs", {"text": "hi"}).status_code for _ in range(2)] == [201, 201]

    throttled = acme.post("/runs", {"text": "hi"})

    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert Run.objects.filter(owner="client:acme").count() == 2
    assert acme.get("/runs").status_code == 200  # reads have their own allowance
    assert beta.post("/runs", {"text": "hi"}).status_code == 201  # and each client its own


def test_a_clients_tokens_share_one_allowance(client, settings):
    settings.RUNS_API_TOKENS = ["acme:read:tok-old", "acme:read:tok-new"]
    settings.RUNS_API_THROTTLE_RATES = {"read": "1/h"}
    assert As(client, "tok-old").get("/runs").status_code == 200
    throttled = As(client, "tok-new").get("/runs")
    assert throttled.status_code == 429
    assert 3500 <= int(throttled["Retry-After"]) <= 3600


def test_a_bucket_set_to_none_is_not_limited(acme, settings):
    settings.RUNS_API_THROTTLE_RATES = {"read": None}
    assert {acme.get("/runs").status_code for _ in range(5)} == {200}


@pytest.fixture
def shared_cache(settings, redis_url) -> str:
    """The throttles on a real Redis (Django's RedisCache), as several web processes share it."""
    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"throttle-test-{uuid.uuid4().hex}",  # a fresh allowance per test
        },
    }
    settings.RUNS_API_THROTTLE_CACHE = "shared"
    return "shared"


def test_requests_at_the_same_moment_never_pass_more_than_the_rate(shared_cache):
    """Twenty checks released at once, each on its own Redis connection like separate web
    processes: exactly the rate passes (a read-then-write history would let most through)."""
    gate = threading.Barrier(20)

    def check() -> bool:
        gate.wait()
        return throttles.START.take("client:acme", "5/min")

    with ThreadPoolExecutor(20) as pool:
        passed = list(pool.map(lambda _: check(), range(20)))

    assert passed.count(True) == 5


def test_a_cache_that_does_not_answer_lets_requests_through(acme, settings, caplog, monkeypatch):
    """The throttle protects the service; it must not take it down with its Redis."""
    settings.CACHES = {
        **settings.CACHES,
        "gone": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        },
    }
    settings.RUNS_API_THROTTLE_CACHE = "gone"
    settings.RUNS_API_THROTTLE_RATES = {"read": "1/min"}
    monkeypatch.setattr(throttles, "_last_warning", -throttles.WARN_EVERY_S)

    assert [acme.get("/runs").status_code for _ in range(3)] == [200, 200, 200]
    warnings = [r for r in caplog.records if "API throttles: not enforced" in r.getMessage()]
    assert len(warnings) == 1  # once a minute, not once a request


def test_a_window_opens_at_the_first_request_and_a_new_one_when_it_ends(acme, settings):
    settings.RUNS_API_THROTTLE_RATES = {"read": "2/2s"}
    assert [acme.get("/runs").status_code for _ in range(2)] == [200, 200]
    throttled = acme.get("/runs")
    assert throttled.status_code == 429
    assert throttled["Retry-After"] in ("1", "2")  # what is left of the 2 s window

    time.sleep(int(throttled["Retry-After"]) + 0.1)

    assert acme.get("/runs").status_code == 200


# --- the tokens setting -------------------------------------------------------------------------


def test_plain_tokens_are_the_default_client_with_the_operate_scope(settings):
    settings.RUNS_API_TOKENS = "tok-1, tok-2"  # a string, as from the environment
    assert [(c.name, c.scope, c.token) for c in configured_clients()] == [
        ("default", "operate", "tok-1"),
        ("default", "operate", "tok-2"),
    ]


def test_the_compact_form_names_client_and_scope_and_keeps_colons_in_the_secret():
    client = client_for_token("tok-audit:with:colons")
    assert client is not None
    assert (client.name, client.scope, client.owner) == ("audit", "read", "client:audit")
    assert client_for_token("tok-audit") is None
    assert client_for_token("") is None


def test_a_token_never_shows_in_a_repr():
    client = ApiClient(name="acme", scope="operate", token="s3cret")
    assert "s3cret" not in repr(client) and "s3cret" not in str(client)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("acme:s3cret", "expected SECRET or name:scope:SECRET"),
        ("acme:admin:s3cret", "the scope must be one of read, operate"),
        ("bad name:read:s3cret", "the client name"),
        ("acme:read:", "the token is empty"),
        ({"token": "s3cret", "models": "gpt-4.1"}, "models must be a list"),
        ({"token": "s3cret", "scopes": "read"}, "unknown keys ['scopes']"),
    ],
)
def test_a_malformed_entry_is_a_configuration_error_that_hides_the_secret(settings, entry, says):
    settings.RUNS_API_TOKENS = ["fine", entry]
    with pytest.raises(ImproperlyConfigured, match="RUNS_API_TOKENS entry 2") as error:
        configured_clients()
    assert says in str(error.value)
    assert "s3cret" not in str(error.value)


# --- the admin stays global ---------------------------------------------------------------------


def test_the_admin_lists_every_owners_runs_and_filters_by_owner(admin_client, make_run):
    acmes, betas, nobodys = (make_run(owner=o) for o in ("client:acme", "client:beta", ""))
    changelist = reverse("admin:runs_run_changelist")

    def listed(query: str = "") -> list[int]:
        return [r.pk for r in admin_client.get(f"{changelist}{query}").context["cl"].result_list]

    assert listed() == [nobodys.pk, betas.pk, acmes.pk]
    assert listed("?owner=client:acme") == [acmes.pk]
    assert listed("?owner=-") == [nobodys.pk]
    page = admin_client.get(changelist).content.decode()
    assert "?owner=client%3Anarrow" in page  # the configured clients are the choices
