"""The admin's Costs page: what runs cost, by model, mode and a metadata key the operator types.

Operators see every owner's runs (the API shows a client only its own: ``api/costs.py``); an
owner may be typed to narrow it. The page is one more URL of the run admin
(``admin/runs/run/costs/``, linked from the run list), for users who may view runs. The sums are
``spend.totals``: two ``GROUP BY`` over the runs created in the period, nothing per row. With
no day given the period is the current month (UTC): a visit never groups the whole table.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from .. import pricing, spend
from ..models import Run


class CostsForm(forms.Form):
    key = forms.CharField(
        required=False, max_length=64, help_text="A metadata key to total by, e.g. customer."
    )
    owner = forms.CharField(
        required=False, max_length=128, help_text="Only this owner's runs (client:acme, user:7)."
    )
    since = forms.DateField(
        required=False,
        help_text="Created on or after this day (UTC); no day given: the current month.",
    )
    until = forms.DateField(required=False, help_text="Created on or before this day (UTC).")
    limit = forms.IntegerField(required=False, min_value=1, max_value=1000, initial=100)


def _midnight(day: Any) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def month_start() -> date:
    """The first day of the current month (UTC): the period when the form gives no day."""
    return datetime.now(UTC).date().replace(day=1)


def filtered(runs: QuerySet[Run], data: dict[str, Any]) -> QuerySet[Run]:
    """``runs`` narrowed by the form's owner and days (``until`` counts its whole day)."""
    if data.get("owner"):
        runs = runs.filter(owner=data["owner"])
    if data.get("since"):
        runs = runs.filter(created_at__gte=_midnight(data["since"]))
    if data.get("until") and data["until"] < date.max:  # the last day has no next midnight
        runs = runs.filter(created_at__lt=_midnight(data["until"]) + timedelta(days=1))
    return runs


class CostsMixin:
    """Adds the Costs page to the run admin (``RunAdmin``)."""

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.costs_view)  # type: ignore[attr-defined]
        return [path("costs/", view, name="runs_run_costs"), *super().get_urls()]  # type: ignore[misc]

    def costs_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        form = CostsForm(request.GET or None, initial={"since": month_start()})
        totals = None
        if not form.is_bound or form.is_valid():
            data = dict(form.cleaned_data) if form.is_bound else {}
            if not data.get("since") and not data.get("until"):
                data["since"] = month_start()
            runs = filtered(Run.objects.all(), data)
            totals = spend.totals(runs, data.get("key") or None, data.get("limit") or 100)
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": Run._meta,
            "title": "Costs",
            "form": form,
            "totals": totals,
            "key": form.cleaned_data.get("key") if form.is_bound and form.is_valid() else "",
            "prices_source": pricing.PRICES_SOURCE,
            "prices_taken": pricing.PRICES_TAKEN,
        }
        return TemplateResponse(request, "admin/runs/run/costs.html", context)
