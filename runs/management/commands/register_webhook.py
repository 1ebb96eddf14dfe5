"""``manage.py register_webhook URL``: create, rotate, test and list OpenAI webhook endpoints.

Why a command: the dashboard works, but a secret copied by hand is where webhooks go wrong (a
truncated paste is a 500 on every delivery: runs.E101), and a rotation needs two settings changed
in the right order. This command does both through the SDK (``client.webhooks``) with the
project's client (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``: the local simulator implements these
endpoints too) and prints exactly what to set.

- ``register_webhook URL [--name NAME]``: create the endpoint for the events the intake acts on
  and print its secret once (OpenAI shows it only in this answer).
- ``register_webhook --rotate ENDPOINT_ID``: a new secret, the old one kept valid for 24 h
  (``--immediately``: not kept, for a leaked secret); prints the new secret and the fallback.
- ``register_webhook --test ENDPOINT_ID``: OpenAI sends a signed sample event; exit 1 unless the
  endpoint answered 2xx (our intake answers 400 when the signature does not verify).
- ``register_webhook --list``: the project's endpoints, with secret hints only.

Exit codes: 0 done, 1 the API refused or the endpoint did not accept the test, 2 bad arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import openai
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import URLValidator
from openai.resources.webhooks import Webhooks

from runs.client import get_client
from runs.engine.events import BATCH_EVENTS, RESPONSE_TERMINAL_EVENTS

from ._args import bad, check_text

#: What the endpoint subscribes to: the events the intake acts on (a batch's end included).
EVENT_TYPES = tuple(sorted(RESPONSE_TERMINAL_EVENTS | BATCH_EVENTS))
#: Plain HTTP is for a local receiver only (the simulator, a test); OpenAI wants HTTPS.
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
#: The sample ``--test`` sends unless told.
TEST_EVENT = "response.completed"


def check_url(url: str) -> str:
    """An absolute HTTPS URL (HTTP only to a loopback host), or a bad-arguments error."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise bad(f"{url!r} is not an absolute http(s) URL") from None
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK:
        raise bad(f"{url!r}: OpenAI delivers webhooks to HTTPS URLs only")
    return url


def api_failure(exc: openai.OpenAIError) -> CommandError:
    """The API's own words for a refusal (exit code 1); never includes the API key."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        return CommandError(f"OpenAI answered {exc.status_code}: {message}")
    if isinstance(exc, openai.APIConnectionError):
        return CommandError(f"could not reach the OpenAI API: {exc}")
    return CommandError(f"OpenAI call failed: {exc}")


class Command(BaseCommand):
    help = (
        "Create an OpenAI webhook endpoint for URL and print its secret once; or --rotate, "
        "--test or --list existing endpoints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", nargs="?", help="the HTTPS URL of our /webhooks/openai/ view")
        parser.add_argument("--name", help="the endpoint's name (default: runs (HOST))")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--rotate", metavar="ENDPOINT_ID", help="rotate the signing secret")
        action.add_argument("--test", metavar="ENDPOINT_ID", help="send a signed sample event")
        action.add_argument("--list", action="store_true", help="list the project's endpoints")
        parser.add_argument(
            "--immediately",
            action="store_true",
            help="with --rotate: invalidate the old secret now instead of in 24 h (a leak)",
        )
        parser.add_argument(
            "--event-type",
            default=TEST_EVENT,
            choices=EVENT_TYPES,
            help=f"with --test: the sample event (default {TEST_EVENT})",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        endpoint_id = opts["rotate"] or opts["test"]
        actions = [bool(opts["url"]), bool(endpoint_id), opts["list"]]
        if sum(actions) != 1:
            raise bad("give exactly one of URL, --rotate ENDPOINT_ID, --test ENDPOINT_ID, --list")
        for name, option in (
            ("URL", "url"),
            ("--name", "name"),
            ("ENDPOINT_ID", "rotate"),
            ("ENDPOINT_ID", "test"),
        ):
            check_text(name, opts[option])
        if opts["immediately"] and not opts["rotate"]:
            raise bad("--immediately goes with --rotate")
        if endpoint_id is not None and not endpoint_id.strip():
            raise bad("ENDPOINT_ID must not be empty")
        webhooks = get_client().webhooks
        try:
            if opts["url"]:
                self._create(webhooks, check_url(opts["url"]), opts["name"])
            elif opts["rotate"]:
                self._rotate(webhooks, opts["rotate"], keep_old=not opts["immediately"])
            elif opts["test"]:
                self._send_test(webhooks, opts["test"], opts["event_type"])
            else:
                self._list(webhooks)
        except openai.OpenAIError as exc:
            raise api_failure(exc) from None

    def _create(self, webhooks: Webhooks, url: str, name: str | None) -> None:
        endpoint = webhooks.create(
            url=url,
            name=name or f"runs ({urlsplit(url).hostname})",
            event_types=list(EVENT_TYPES),
        )
        w = self.stdout.write
        w(f"Created webhook endpoint {endpoint.id} for {endpoint.url}")
        w(f"  events: {', '.join(endpoint.event_types)}")
        w("")
        w("Its signing secret is shown only now. Set it in the environment of the web process")
        w("that serves this URL (never commit it):")
        w("")
        w(f"  OPENAI_WEBHOOK_SECRET={endpoint.signing_secret}")
        w("")
        w(f"Then check a delivery: manage.py register_webhook --test {endpoint.id}")

    def _rotate(self, webhooks: Webhooks, endpoint_id: str, *, keep_old: bool) -> None:
        endpoint = webhooks.rotate_secret(endpoint_id, keep_old_secret_active_for_24_hours=keep_old)
        w = self.stdout.write
        if keep_old:
            w(f"Rotated the signing secret of {endpoint.id}; the old one stays valid for 24 h.")
        else:
            w(f"Rotated the signing secret of {endpoint.id}; the old one is no longer valid.")
        w("Set, in the web process's environment (the new secret is shown only now):")
        w("")
        w(f"  OPENAI_WEBHOOK_SECRET={endpoint.signing_secret}")
        if keep_old:
            w("  OPENAI_WEBHOOK_SECRET_FALLBACKS=<the previous OPENAI_WEBHOOK_SECRET>")
            w("")
            w("Deliveries signed with either secret are accepted meanwhile. Remove the fallback")
            w("after 24 h, or after 72 h if deliveries were failing (OpenAI retries that long).")

    def _send_test(self, webhooks: Webhooks, endpoint_id: str, event_type: str) -> None:
        result = webhooks.test(endpoint_id, event_type=event_type)
        where = f"{result.event_type} sample event to {result.webhook_endpoint_id}"
        if not 200 <= result.status_code < 300:
            hint = (
                " (runs answers 400 to a signature it cannot verify: is OPENAI_WEBHOOK_SECRET, or "
                "one of OPENAI_WEBHOOK_SECRET_FALLBACKS, this endpoint's secret?)"
                if result.status_code == 400
                else ""
            )
            raise CommandError(f"sent a {where}: the endpoint answered {result.status_code}{hint}")
        self.stdout.write(f"Sent a {where}: the endpoint answered {result.status_code}.")

    def _list(self, webhooks: Webhooks) -> None:
        found = False
        for endpoint in webhooks.list():
            found = True
            hint = endpoint.signing_secret_hint or "-"
            events = ",".join(endpoint.event_types)
            self.stdout.write(f"{endpoint.id}  {endpoint.url}  {events}  secret {hint}")
        if not found:
            self.stdout.write("No webhook endpoints.")
