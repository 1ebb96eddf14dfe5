"""The admin's owner filter: the API clients configured in ``RUNS_API_TOKENS``, and "nobody".

Its choices come from the setting, not from a ``SELECT DISTINCT owner`` (a scan of the whole
table at every page view); any other owner, ``user:<pk>`` say, is reachable by URL
(``?owner=user:7``). Filtering uses the ``owner, -id`` index.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpRequest

from ..api.tokens import configured_clients

#: The URL value for rows without an owner (a blank value would mean "no filter").
NOBODY = "-"


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        try:
            names = sorted({client.name for client in configured_clients()})
        except ImproperlyConfigured:
            names = []  # the API says what is wrong; the admin still works
        return [(f"client:{name}", name) for name in names] + [(NOBODY, "nobody (no owner)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(owner="" if value == NOBODY else value)
