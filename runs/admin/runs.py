"""The run list and the run page.

Read-only: nobody edits a run's fields by hand (the state machine owns them). What an operator
may *do* to a run are explicit actions, offered on the list (bulk) and as buttons on the page,
to users with the ``runs.change_run`` permission: cancel, poll now, retry as a new run, and give
a manual tool's output.

The list stays fast at any size: no per-row queries (every column comes from the run row), the
default order and every filter use an index, no second "full" count, and an estimated count for
the unfiltered list on PostgreSQL (``paginator.py``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from .. import flower
from ..metadata_query import with_entry
from ..models import Run, ToolCall
from ..schedule import describe
from . import operations
from .costs import CostsMixin
from .lookups import StorableLookupsMixin
from .owners import OwnerFilter
from .paginator import EstimatedCountPaginator
from .timeline import timeline

#: Largest primary key: a longer number typed in the search box is not an id.
MAX_ID = 2**63 - 1
#: The run page's options (issue 16), read-only like every field, and what came of them.
OPTION_FIELDS = ("mode", "completion_window", "service_tier", "response_format")
OPTION_FIELDS += ("reasoning_effort", "max_output_tokens", "prompt_cache_key", "safety_identifier")
OUTCOME_FIELDS = ("output_text", "parsed_output", "usage", "cost", "last_error_code", "last_error")


def search_runs(queryset: QuerySet[Run], term: str) -> QuerySet[Run]:
    """The admin search box: ``42`` (our id), ``resp_...`` (remote id of the run or its thread),
    ``key=value`` (a metadata entry), anything else: a remote id or text inside the metadata."""
    term = term.strip()
    if not term:
        return queryset
    if term.isascii() and term.isdigit() and int(term) <= MAX_ID:  # not "²": int() refuses it
        return queryset.filter(Q(pk=int(term)) | Q(remote_id=term))
    key, sep, value = term.partition("=")
    if sep and key.strip():
        return with_entry(queryset, key.strip(), value.strip())
    return queryset.filter(
        Q(remote_id=term) | Q(thread__remote_id=term) | Q(metadata__icontains=term)
    )


class OperateMixin:
    """The ``operate`` permission the actions ask for: may change runs (no field is editable)."""

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("runs.change_run")


@admin.register(Run)
class RunAdmin(StorableLookupsMixin, CostsMixin, OperateMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "status_badge",
        "backend",
        "strategy",
        "mode",
        "model",
        "owner",
        "remote",
        "thread_id",
        "api_calls",
        "polls",
        "webhook_events",
        "cost",
        "created_at",
        "duration",
    )
    list_display_links = ("id", "status_badge")
    list_filter = (
        "status",
        "backend",
        "strategy",
        OwnerFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("remote_id",)  # shows the box; the search itself is ``search_runs``
    search_help_text = "Our id (42), a remote id (resp_...), or metadata (key=value or any text)."
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a COUNT per filter choice: too dear on a big table
    paginator = EstimatedCountPaginator
    actions = ("cancel_selected", "poll_selected", "retry_selected")
    fieldsets = (
        (
            None,
            {"fields": ("status_badge", "thread_link", "owner", "backend", "strategy", "model")},
        ),
        ("At OpenAI", {"fields": ("remote_id", "flower_link", "live_link")}),
        ("Input", {"fields": ("instructions", "tools", "metadata")}),
        ("Options", {"fields": OPTION_FIELDS}),
        ("Outcome", {"fields": OUTCOME_FIELDS}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "start_claimed_at",
                    "submitted_at",
                    "started_at",
                    "completed_at",
                    "remote_completed_at",
                    "deadline_at",
                    "duration",
                )
            },
        ),
        ("Counters", {"fields": ("api_calls", "polls", "webhook_events")}),
        ("Schedule", {"fields": ("next_poll",)}),
        (
            "Polling",
            {
                "classes": ("collapse",),
                "fields": (
                    "poll_attempt",
                    "poll_generation",
                    "next_poll_at",
                    "poll_by_due",
                    "error_retries",
                ),
            },
        ),
    )

    class Media:
        css = {"all": ("runs/admin.css",)}

    # --- read-only ---------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start from code, the API or the shell: they need a start_run

    def has_change_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False

    # --- columns and fields --------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, run: Run) -> str:
        return format_html(
            '<span class="run-status run-status-{}">{}</span>', run.status, run.get_status_display()
        )

    @admin.display(description="remote id", ordering="remote_id")
    def remote(self, run: Run) -> str:
        if len(run.remote_id) <= 20:
            return run.remote_id or "-"
        return format_html('<span title="{}">{}…</span>', run.remote_id, run.remote_id[:18])

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        if run.completed_at is None:
            return "-"
        return f"{(run.completed_at - run.created_at).total_seconds():.1f} s"

    @admin.display(description="next poll")
    def next_poll(self, run: Run) -> str:
        """When the next poll is due and why (the window, the safety net, tool outputs...)."""
        return describe(run)

    @admin.display(description="thread")
    def thread_link(self, run: Run) -> str:
        url = reverse("admin:runs_thread_change", args=(run.thread_id,))
        return format_html('<a href="{}">thread {}</a>', url, run.thread_id)

    @admin.display(description="tasks")
    def flower_link(self, run: Run) -> str:
        url = flower.tasks_url(run.pk)
        if url is None:
            return "set FLOWER_URL to link this run's tasks in Flower"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">this run\'s tasks in Flower</a>', url
        )

    @admin.display(description="live status")
    def live_link(self, run: Run) -> str:
        return format_html('<a href="{}">watch live</a>', reverse("run-live", args=(run.pk,)))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Run], search_term: str
    ) -> tuple[QuerySet[Run], bool]:
        return search_runs(queryset, search_term), False

    # --- bulk actions ----------------------------------------------------------------------------

    def _report(self, request: HttpRequest, outcome: operations.Outcome) -> None:
        if outcome.done:
            self.message_user(request, "; ".join(outcome.done), messages.SUCCESS)
        if outcome.refused:
            self.message_user(request, "; ".join(outcome.refused), messages.WARNING)

    @admin.action(description="Cancel selected runs", permissions=["operate"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._report(request, operations.cancel(queryset, by=f"admin:{request.user}"))

    @admin.action(description="Poll selected runs now", permissions=["operate"])
    def poll_selected(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._report(request, operations.poll_now(queryset))

    @admin.action(description="Retry selected runs as new runs", permissions=["operate"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._report(request, operations.retry(queryset.select_related("thread")))

    # --- the run page: timeline, buttons, tool outputs --------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<int:run_id>/operate/<str:action>/",
                view(require_POST(self.operate_view)),
                name="runs_run_operate",
            ),
            path(
                "<int:run_id>/tool-output/",
                view(require_POST(self.tool_output_view)),
                name="runs_run_tool_output",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Run | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context.update(
                timeline=timeline(obj),
                manual_calls=list(obj.tool_calls.filter(state=ToolCall.State.MANUAL)),
                can_operate=self.has_operate_permission(request),
                flower_url=flower.tasks_url(obj.pk),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _back(self, run_id: int) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:runs_run_change", args=(run_id,)))

    def operate_view(self, request: HttpRequest, run_id: int, action: str) -> HttpResponse:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        run = get_object_or_404(Run.objects.select_related("thread"), pk=run_id)
        if action == "cancel":
            outcome = operations.cancel([run], by=f"admin:{request.user}")
        elif action == "poll":
            outcome = operations.poll_now([run])
        elif action == "retry":
            outcome = operations.retry([run])
        else:
            raise PermissionDenied(f"unknown action {action!r}")
        self._report(request, outcome)
        return self._back(run.pk)

    def tool_output_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        run = get_object_or_404(Run, pk=run_id)
        call_id = request.POST.get("call_id", "")
        try:
            call = operations.give_tool_output(run, call_id, request.POST.get("output", ""))
        except ValidationError as exc:
            self.message_user(
                request, f"Output not saved: {' '.join(exc.messages)}", messages.ERROR
            )
        else:
            self.message_user(request, f"Output of {call.name} ({call.call_id}) submitted.")
        return self._back(run.pk)
