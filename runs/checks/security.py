"""Checks of what guards the doors: webhook secrets, who may scrape /metrics, API tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from ..api.tokens import configured_clients
from ..conf import settings
from ..intake import secrets as webhook_secrets
from ..metrics_access import parse_networks
from ..status import Strategy

# --- Webhook secrets ----------------------------------------------------------------------------


@register("runs")
def check_webhook_secrets(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E101: a malformed webhook secret; W101: the webhook strategy without any secret.

    A malformed secret (not ``whsec_`` + base64) can verify nothing: the intake would answer 500
    to every delivery (runs/intake/secrets.py says why not 400). Messages name the setting (and a
    fallback's position), never the value. W101 is a warning like W001: only the web process
    that receives webhooks needs the secret.
    """
    messages: list[CheckMessage] = [
        Error(
            f"{problem}: no webhook delivery can be verified with it.",
            hint="Copy the secret exactly as OpenAI showed it (whsec_ followed by base64), e.g. "
            "from manage.py register_webhook; fallbacks are comma-separated.",
            id="runs.E101",
        )
        for problem in webhook_secrets.problems()
    ]
    if settings.RUNS_STRATEGY == Strategy.WEBHOOK and not webhook_secrets.current():
        messages.append(
            Warning(
                "RUNS_STRATEGY is 'webhook' but OPENAI_WEBHOOK_SECRET is not set: the webhook "
                "endpoint answers 500 and runs finish on the slow safety-net polls only.",
                hint="Set OPENAI_WEBHOOK_SECRET in the web process's environment "
                "(manage.py register_webhook URL prints it).",
                id="runs.W101",
            )
        )
    return messages


# --- Metrics access -----------------------------------------------------------------------------


@register("runs")
def check_metrics_access(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E201: an allow-list entry that is no address or network; every scrape would answer 500."""
    try:
        parse_networks(settings.RUNS_METRICS_ALLOWED_IPS)
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Addresses or CIDR networks, comma-separated, e.g. 127.0.0.0/8,10.0.0.0/8 "
                "(docs/operations.md, 'Who may scrape /metrics').",
                id="runs.E201",
            )
        ]
    return []


# --- API tokens (docs/api.md) ---------------------------------------------------------------------


@register("runs")
def check_api_tokens(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list:
    """E401: an entry of RUNS_API_TOKENS that cannot be parsed; every API request would be a 500.

    The message names the entry's position, never its text: it holds a secret.
    """
    try:
        configured_clients()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint="Entries are TOKEN, CLIENT:SCOPE:TOKEN (scope read or operate) or, in "
                "Python settings, mappings (docs/api.md, 'Tokens').",
                id="runs.E401",
            )
        ]
    return []
