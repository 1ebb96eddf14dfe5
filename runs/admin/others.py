"""Threads, tool calls and webhook events: read-only lists to search and link from."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from ..models import Message, Thread, ToolCall, WebhookEvent
from .lookups import StorableLookupsMixin
from .owners import OwnerFilter


class ReadOnlyAdmin(StorableLookupsMixin, admin.ModelAdmin):
    """Views only: these rows are written by the app, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


def run_link(run_id: int | None) -> str:
    if run_id is None:
        return "-"
    return format_html(
        '<a href="{}">run {}</a>', reverse("admin:runs_run_change", args=(run_id,)), run_id
    )


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("role", "content", "sent_at", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Thread)
class ThreadAdmin(ReadOnlyAdmin):
    list_display = ("id", "backend", "owner", "remote_id", "created_at", "runs_link")
    list_filter = ("backend", OwnerFilter)
    search_fields = ("=id", "=remote_id")
    show_full_result_count = False
    inlines = (MessageInline,)

    @admin.display(description="runs")
    def runs_link(self, thread: Thread) -> str:
        url = reverse("admin:runs_run_changelist") + f"?thread__id__exact={thread.pk}"
        return format_html('<a href="{}">runs</a>', url)


@admin.register(ToolCall)
class ToolCallAdmin(ReadOnlyAdmin):
    list_display = ("id", "run_column", "name", "call_id", "state", "round", "created_at")
    list_filter = ("state", "name")
    search_fields = ("=call_id", "=run__id")
    show_full_result_count = False

    @admin.display(description="run", ordering="run_id")
    def run_column(self, call: ToolCall) -> str:
        return run_link(call.run_id)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "type",
        "object_id",
        "run_column",
        "outcome",
        "received_at",
        "processed_at",
    )
    list_filter = ("outcome", "type", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=webhook_id", "=event_id", "=object_id")
    show_full_result_count = False
    exclude = ("payload",)
    readonly_fields = ("payload_pretty",)

    @admin.display(description="run", ordering="run_id")
    def run_column(self, event: WebhookEvent) -> str:
        return run_link(event.run_id)

    @admin.display(description="payload")
    def payload_pretty(self, event: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload, indent=2, sort_keys=True))
