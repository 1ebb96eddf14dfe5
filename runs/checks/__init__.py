"""Django system checks: what a host project can get wrong, said by ``manage.py check``.

A host project sets only secrets and URLs (README, "Add runs to your project"); everything else
has a default in ``conf.py``. What is left to get wrong is reported here, before the first run
fails in a worker's log: no API key, no Celery broker, a result backend whose app is missing, a
backend or strategy name nobody knows, a number that would make the poll schedule raise.

Errors (``runs.E...``) are what stops runs from being tracked at all; warnings (``runs.W...``)
are what a process may legitimately lack (a web process never calls OpenAI, so it can run without
the API key). None of these is deploy-only: a correctly configured host sees nothing from ``runs``
under ``check --deploy`` either. Importing this module registers the checks
(``RunsConfig.ready``); every function decorated with ``@register("runs")`` in its modules is one.

Ids in use: E001 broker, E002 result-backend app, E003 backend, E004 strategy, E005 a number,
E006 a schedule; W001 API key, W002 result backend, W003 a PostgreSQL database with no pool for the
workers; E101 a malformed webhook secret (current or fallback), W101 the webhook strategy
without a secret; E201 a bad metrics allow-list entry;
E301 a bad RUNS_QUEUES, E302 an unknown RUNS_POLL_MODE or RUNS_SAFETY_NET_MODE, W301 a side
channel (live status, the budget) without a Redis URL, W302 runs polled by due time with nothing
scheduling runs.poll_due, W303 a queue RUNS_QUEUES sends to that a worker without -Q does not
read, W304 RUNS_MAX_COUNTDOWN_S past half the broker's redelivery timeout; E401 an API token
entry that cannot be parsed; E011 a bad RUNS_PRICES entry, E012 a bad RUNS_SPEND_LIMITS.
"""

from .configuration import (
    check_api_key,
    check_celery,
    check_choices,
    check_numbers,
    check_worker_connections,
)
from .queues import check_countdown_cap, check_poll_mode, check_queues, check_queues_consumed
from .security import check_api_tokens, check_metrics_access, check_webhook_secrets

__all__ = [
    "check_api_key",
    "check_api_tokens",
    "check_celery",
    "check_choices",
    "check_countdown_cap",
    "check_metrics_access",
    "check_numbers",
    "check_poll_mode",
    "check_queues",
    "check_queues_consumed",
    "check_webhook_secrets",
    "check_worker_connections",
]
