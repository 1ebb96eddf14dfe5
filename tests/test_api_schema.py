"""Property-based: schemathesis drives every operation of ``/api/openapi.json`` in-process.

For each operation it generates requests from the schema (valid ones, and for the body and
parameters also invalid ones), sends them through Django's WSGI handler with a valid token, and
checks that the answer is never a 5xx, that its status code is one the schema declares, and that
its body and content type match what the schema says for that status. Some runs, threads and a
manual tool call, owned by the token's client, exist in the database so that ids 1.. sometimes
hit a real row. Throttling is off here (``test_api_scopes.py`` tests it): a 429 is declared, but
it would keep the generated requests from reaching the operations.

Bounded: ``MAX_EXAMPLES`` per operation keeps the whole test to a few seconds. Examples are
random each run (no example database), so CI keeps exploring; a failure prints a curl command
that reproduces it.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runs.models import Run, Thread, ToolCall
from tests.conftest import API_TOKEN

#: Per operation. ``SCHEMATHESIS_MAX_EXAMPLES=500`` for a deeper search by hand.
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())

#: (operation, status code) -> how many requests got it; printed at the end (``-s``).
EXERCISED: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_what_was_exercised():
    yield
    by_operation: dict[str, dict[int, int]] = defaultdict(dict)
    for (label, status), count in sorted(EXERCISED.items()):
        by_operation[label][status] = count
    print(f"\nschemathesis: {sum(EXERCISED.values())} requests")
    for label, statuses in by_operation.items():
        print(f"  {label:42} {statuses}")


#: The client of the plain token ``API_TOKEN``.
OWNER = "client:default"


@pytest.fixture
def some_runs(make_run, api_token, django_db_reset_sequences, settings) -> None:
    """Rows with small ids (sequences reset), in the states each operation cares about."""
    settings.RUNS_API_THROTTLE_RATES = {"read": None, "write": None, "start": None}
    for status in ("pending", "queued", "completed", "failed"):
        make_run(status, remote_id=f"resp_{status}", owner=OWNER)
    waiting = make_run("requires_action", remote_id="resp_tools", owner=OWNER)
    ToolCall.objects.create(run=waiting, call_id="call_1", name="ask", state="manual")
    Thread.objects.update(owner=OWNER)
    assert Run.objects.filter(pk=1).exists()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_request_makes_the_api_fail(case, some_runs):
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {API_TOKEN}"}, checks=CHECKS
    )
    EXERCISED[(case.operation.label, response.status_code)] += 1
