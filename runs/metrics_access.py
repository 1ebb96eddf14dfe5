"""Who may read ``/metrics``: a bearer token, or an address on the allow-list (default: loopback).

Why it is locked at all: the metrics name every status, webhook outcome and view of the site and
how busy each is, and every scrape costs database work, so a public ``/metrics`` is both a map
for an attacker and a lever. Why loopback is allowed by default: the demo and a Prometheus on the
same host then scrape with no configuration, while nothing else can.

A request is allowed when

- ``RUNS_METRICS_TOKEN`` is set and the request carries ``Authorization: Bearer <that token>``
  (compared in constant time; a wrong token is refused even from an allowed address, so a
  misconfigured scraper shows up at once), or
- it carries no token and came straight from an address in ``RUNS_METRICS_ALLOWED_IPS``
  (CIDRs). A request that passed through a reverse proxy (``Forwarded``, ``X-Forwarded-For``
  or ``X-Real-IP`` present) needs the token: a proxy on the same host would otherwise make
  every visitor look like loopback.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from .conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers a reverse proxy adds: their presence means REMOTE_ADDR is the proxy, not the client.
PROXY_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


def may_scrape(request: HttpRequest) -> bool:
    """True when this request may read the metrics (see the module's docstring)."""
    presented = _bearer_token(request)
    if presented is not None:
        expected = settings.RUNS_METRICS_TOKEN or ""
        return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())
    if any(request.META.get(header) for header in PROXY_HEADERS):
        return False
    return address_allowed(request.META.get("REMOTE_ADDR", ""), settings.RUNS_METRICS_ALLOWED_IPS)


def address_allowed(address: str, allowed: Iterable[str] | str) -> bool:
    """Is ``address`` inside one of the ``allowed`` networks? An unparsable address is not."""
    networks = parse_networks(allowed)  # first: a bad list is an error whoever asks
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
    return any(ip in network for network in networks)


def parse_networks(allowed: Iterable[str] | str) -> tuple[Network, ...]:
    """The allow-list as networks: a list, or one comma-separated string as in the environment.

    A bad entry is a configuration error that names it (also a system check, ``runs.E201``).
    """
    entries = allowed.split(",") if isinstance(allowed, str) else allowed
    return _parse(tuple(entry.strip() for entry in entries if entry.strip()))


@lru_cache(maxsize=8)
def _parse(entries: tuple[str, ...]) -> tuple[Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"RUNS_METRICS_ALLOWED_IPS: {entry!r} is not an address or CIDR network ({exc})"
            ) from exc
    return tuple(networks)


def _bearer_token(request: HttpRequest) -> str | None:
    """The token of an ``Authorization: Bearer`` header; None when there is no such header."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()
