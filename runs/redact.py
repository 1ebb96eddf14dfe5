"""Masking secrets in text operators will read: tool errors and tracebacks, log lines.

Why a module of its own: an exception's message is written by code we do not control (a tool, an
HTTP library) and routinely holds a URL with a key in it, an ``Authorization`` header, or the
very API key this app is configured with. Before such text reaches the database or the log it
goes through ``redact``, which replaces what looks like a credential with ``[redacted]`` and
keeps the rest readable (the scheme and host of a URL, the name of a query parameter).

It masks, in this order:

- the values this process is configured with, wherever they appear: ``OPENAI_API_KEY``,
  ``OPENAI_WEBHOOK_SECRET`` (and ``OPENAI_WEBHOOK_SECRET_FALLBACKS``), the tokens of
  ``RUNS_API_TOKENS`` (of a ``client:scope:token`` entry, the token), ``RUNS_METRICS_TOKEN``,
  Django's ``SECRET_KEY`` (and ``SECRET_KEY_FALLBACKS``);
- API keys by their shape: ``sk-...`` (OpenAI), ``whsec_...`` (webhook secrets), GitHub tokens;
- ``Bearer``/``Basic`` credentials and ``Authorization:`` header values;
- the user-info part of a URL (``https://user:pass@host`` -> ``https://[redacted]@host``);
- values of pairs whose name says secret (``key``, ``token``, ``secret``, ``password``,
  ``signature``, ``auth``, ...): query parameters and ``name=value`` (spaces around ``=`` too),
  ``"name": value`` (quoted or a number), header-style ``X-Api-Key: value`` and
  ``password: value``. A quoted value is masked whole, spaces and all (``passwd="[redacted]"``).
  Only the bare word ``key`` is left alone before a colon: ``key: Field required`` is how
  error messages name a field.

Over-masking is the accepted failure mode: a word that merely looks like a key is hidden too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from django.conf import settings as django_settings

from .conf import settings

MASK = "[redacted]"

#: Configured secrets shorter than this are not searched for (they would mask ordinary words).
MIN_SECRET_LEN = 6

#: Settings of this app whose values are secrets of this deployment.
SECRET_SETTINGS = (
    "OPENAI_API_KEY",
    "OPENAI_WEBHOOK_SECRET",
    "OPENAI_WEBHOOK_SECRET_FALLBACKS",
    "RUNS_METRICS_TOKEN",
)

#: Django's own secrets (not ``runs`` settings, so read from django.conf).
DJANGO_SECRET_SETTINGS = ("SECRET_KEY", "SECRET_KEY_FALLBACKS")

#: A name that says its value is secret *ends* with one of these words (``api_key``, ``X-Auth``),
#: checked by one look-behind per word (Python's must each have a fixed width). A pair with any
#: other name is not matched at all, so it cannot swallow a secret pair after it
#: (``failed: password=...``).
_SECRET_END = "|".join(
    f"(?<={word})"
    for word in (
        *("key", "token", "secret", "password", "passwd", "pwd"),
        *("signature", "sig", "auth", "credential", "credentials"),
    )
)
#: Every pattern is linear in the text (a message may be megabytes): names start only where a
#: run of name characters starts (the look-behind) and are matched possessively (``++``), so
#: no position is scanned twice. A quoted value runs to its closing quote or, unclosed, to the
#: end of the line (over-masking rather than leaking the rest of a password with spaces).
_VALUE = r"(?P<value>\"[^\"\r\n]*+\"?|'[^'\r\n]*+'?|[^\s\"'&,;#}<>]++)"
_PAIR = re.compile(
    r"(?<![\w.\-])(?P<q>[\"']?)(?P<name>[\w.\-]++)(?i:" + _SECRET_END + r")(?P=q)"
    r"(?P<sep>[ \t]*+(?P<op>[=:])[ \t]*+)" + _VALUE
)

#: (pattern, replacement): shapes that are secrets wherever they appear.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), MASK),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_\-]{8,}"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}"), rf"\1 {MASK}"),
    # the user-info of a URL: scheme://user:password@host
    (re.compile(r"(?i)(?<![\w+.\-])([a-z][\w+.\-]*+://)[^/\s@\"'<>?#]++@"), rf"\1{MASK}@"),
)


def _mask_named(match: re.Match[str]) -> str:
    """A pair whose name says secret: its value masked, quotes kept around a quoted one.

    Not an unquoted ``key: text``, which is how error messages name a field ("key: Field
    required").
    """
    value = match["value"]
    if match["op"] == ":" and not match["q"] and match["name"].lower() == "key":
        return match[0]
    quote = value[0] if value[0] in "\"'" else ""
    closing = quote if len(value) > 1 and value.endswith(quote) else ""
    return match[0][: match.start("value") - match.start()] + quote + MASK + closing


def _values(value: Any) -> Iterator[str]:
    """The strings of a setting: one, a comma-separated list, or an iterable of them."""
    if isinstance(value, str):
        yield from value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        yield from (v for v in value if isinstance(v, str))


def _api_tokens(value: Any) -> Iterator[str]:
    """The secrets of ``RUNS_API_TOKENS``: ``token``, ``client:scope:token`` or a mapping's
    ``token`` (tolerant: a malformed entry is the system check's business, not this one's)."""
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, Iterable):
        return
    for entry in entries:
        if isinstance(entry, Mapping):
            entry = entry.get("token")
        if isinstance(entry, str):
            yield entry.split(":", 2)[-1]


def configured_secrets() -> list[str]:
    """The secret values this process is configured with (empty ones left out), longest first."""
    values: list[str] = []
    for name in SECRET_SETTINGS:
        try:
            values.extend(_values(getattr(settings, name)))
        except AttributeError:  # a setting this version of the app does not have
            continue
    values.extend(_api_tokens(settings.RUNS_API_TOKENS))
    for name in DJANGO_SECRET_SETTINGS:
        values.extend(_values(getattr(django_settings, name, None)))
    stripped = {v.strip() for v in values}
    return sorted((v for v in stripped if len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret it seems to hold replaced by ``[redacted]``.

    ``secrets`` are exact values to mask besides the patterns; by default the configured ones.
    """
    if not text:
        return text
    for secret in configured_secrets() if secrets is None else secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _PAIR.sub(_mask_named, text)
