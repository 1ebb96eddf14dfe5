"""Masking secrets in text operators will read: tool errors and tracebacks, log lines.

Why a module of its own: an exception's message is written by code we do not control (a tool, an
HTTP library) and routinely holds a URL with a key in it, an ``Authorization`` header, or the
very API key this app is configured with. Before such text reaches the database or the log it
goes through ``redact``, which replaces what looks like a credential with ``[redacted]`` and
keeps the rest readable (the scheme and host of a URL, the name of a query parameter).

It masks, in this order:

- the values this process is configured with: ``OPENAI_API_KEY``, ``OPENAI_WEBHOOK_SECRET`` (and
  ``OPENAI_WEBHOOK_SECRET_FALLBACKS`` where that setting exists), wherever they appear;
- API keys by their shape: ``sk-...`` (OpenAI), ``whsec_...`` (webhook secrets), GitHub tokens;
- ``Bearer``/``Basic`` credentials and ``Authorization:`` header values;
- the user-info part of a URL (``https://user:pass@host`` -> ``https://[redacted]@host``);
- values of query parameters and ``name=value`` / ``"name": "value"`` pairs whose name says
  secret: ``key``, ``token``, ``secret``, ``password``, ``signature``, ``auth``, ... (a bare
  ``name: text`` is left alone: that is how error messages name a field).

Over-masking is the accepted failure mode: a word that merely looks like a key is hidden too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .conf import settings

MASK = "[redacted]"

#: Configured secrets shorter than this are not searched for (they would mask ordinary words).
MIN_SECRET_LEN = 6

#: Settings whose values are secrets of this deployment.
SECRET_SETTINGS = ("OPENAI_API_KEY", "OPENAI_WEBHOOK_SECRET", "OPENAI_WEBHOOK_SECRET_FALLBACKS")

#: A name that says its value is secret: it *ends* with one of these (``api_key``, ``X-Auth``).
_SECRET_NAME = re.compile(
    r"(?:key|token|secret|passw(?:or)?d|pwd|signature|sig|auth|credentials?)$", re.IGNORECASE
)

#: Every pattern is linear in the text (a message may be megabytes): names start only where a
#: run of name characters starts (the look-behind) and are matched possessively (``++``), so
#: no position is scanned twice.
_NAME = r"(?<![\w.\-])(?P<name>[\w.\-]++)"
_PAIR = re.compile(_NAME + r"(?P<sep>=[\"']?)(?P<value>[^\s\"'&,;#}<>]++)")
_QUOTED_PAIR = re.compile(
    r"(?P<q>[\"'])(?P<name>[\w.\-]++)(?P=q)(?P<sep>\s*+:\s*+[\"'])(?P<value>[^\"'\r\n]++)"
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
    """``name=value`` (a query parameter too) or ``"name": "value"``: mask a secret's value.

    Not a bare ``name: text``, which is how error messages name a field ("key: Field required").
    """
    if not _SECRET_NAME.search(match["name"]):
        return match[0]
    return match[0][: match.start("value") - match.start()] + MASK


def configured_secrets() -> list[str]:
    """The secret values this process is configured with (empty ones left out), longest first."""
    values: list[str] = []
    for name in SECRET_SETTINGS:
        try:
            value = getattr(settings, name)
        except AttributeError:  # a setting this version of the app does not have
            continue
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, Iterable):
            values.extend(v.strip() for v in value if isinstance(v, str))
    return sorted({v for v in values if len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)


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
    text = _PAIR.sub(_mask_named, text)
    return _QUOTED_PAIR.sub(_mask_named, text)
