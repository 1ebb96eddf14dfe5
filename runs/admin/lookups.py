"""A change list asked to filter on text the database cannot compare is refused as Django
refuses any lookup it cannot make: a redirect to the list with ``?e=1``.

Why: Django's filters (``?owner=``, ``?status__exact=``, ``?name=``) pass the value to the query
as it came, and PostgreSQL refuses a NUL or a lone surrogate with a ``DataError`` at the count:
a 500 for a link anyone can type (``storable``).
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.http import HttpRequest

from ..storable import text_problem


class StorableLookupsMixin:
    """For a ``ModelAdmin``: every query parameter of its change list must be storable text."""

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        for name, values in request.GET.lists():
            for value in (name, *values):
                if problem := text_problem(value):
                    raise IncorrectLookupParameters(f"the filter {name!r}: {problem}")
        return super().get_changelist_instance(request)  # type: ignore[misc]
