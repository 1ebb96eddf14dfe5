"""Threads (a conversation at OpenAI) and their messages."""

from __future__ import annotations

from django.db import models

from ..managers import MessageQuerySet, ThreadQuerySet
from ..status import Backend


class Thread(models.Model):
    """A conversation: an OpenAI conversation (Responses) or thread (Assistants)."""

    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.RESPONSES)
    remote_id = models.CharField(
        max_length=128, blank=True, default="", help_text="Conversation id or thread id at OpenAI."
    )
    metadata = models.JSONField(default=dict, blank=True)
    owner = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="client:<name> (an API token's client) or user:<pk>; blank: nobody's.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ThreadQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["remote_id"], name="runs_thread_remote_idx")]

    def __str__(self) -> str:
        return f"thread {self.pk} ({self.remote_id or 'not yet created'})"


class Message(models.Model):
    """A message of a thread. ``sent_at`` stays empty until a run has carried it to OpenAI."""

    thread = models.ForeignKey(Thread, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, default="user")
    content = models.TextField()
    remote_id = models.CharField(max_length=128, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
