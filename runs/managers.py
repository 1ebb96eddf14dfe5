"""Queries over runs, named for what callers ask."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from .status import ACTIVE, TERMINAL


class RunQuerySet(models.QuerySet):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=ACTIVE)

    def terminal(self) -> RunQuerySet:
        return self.filter(status__in=TERMINAL)


class ThreadQuerySet(models.QuerySet):
    def keep_remote_id(self, thread_id: int, remote_id: str) -> str:
        """Save the thread's remote id unless one is saved already; the id it keeps.

        Two runs of one thread starting at once may each create a remote conversation: the first
        saved wins and both runs use it.
        """
        if self.filter(pk=thread_id, remote_id="").update(remote_id=remote_id):
            return remote_id
        return self.filter(pk=thread_id).values_list("remote_id", flat=True).get()

    def keep_remote_ids(self, remote_ids: dict[int, str]) -> dict[int, str]:
        """``keep_remote_id`` for many threads in two statements (one UPDATE, one read back):
        each thread keeps the first remote id saved. The kept ids, by thread id."""
        if not remote_ids:
            return {}
        self.filter(pk__in=list(remote_ids), remote_id="").update(
            remote_id=models.Case(
                *[models.When(pk=pk, then=models.Value(rid)) for pk, rid in remote_ids.items()],
                default=models.F("remote_id"),
                output_field=models.CharField(),
            )
        )
        return dict(self.filter(pk__in=list(remote_ids)).values_list("pk", "remote_id"))


class MessageQuerySet(models.QuerySet):
    def unsent(self, thread_id: int) -> MessageQuerySet:
        """Messages no run has carried to OpenAI yet, oldest first."""
        return self.filter(thread_id=thread_id, sent_at__isnull=True).order_by("id")

    def unsent_of(self, thread_ids: list[int]) -> MessageQuerySet:
        """``unsent`` for several threads in one query, oldest first."""
        return self.filter(thread_id__in=thread_ids, sent_at__isnull=True).order_by("id")

    def mark_sent(self, ids: list[int]) -> None:
        if ids:
            self.filter(pk__in=ids).update(sent_at=timezone.now())
