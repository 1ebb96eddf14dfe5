"""Run statuses: the vocabulary shared by the models, the state machine and the backends.

Kept apart from ``states.py`` so that models can import the choices without importing the
transition logic (which imports the models).
"""

from django.db import models


class RunStatus(models.TextChoices):
    PENDING = "pending", "pending"
    QUEUED = "queued", "queued"
    IN_PROGRESS = "in_progress", "in progress"
    REQUIRES_ACTION = "requires_action", "requires action"
    CANCELLING = "cancelling", "cancelling"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"
    EXPIRED = "expired", "expired"
    INCOMPLETE = "incomplete", "incomplete"


TERMINAL: frozenset[str] = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.EXPIRED,
        RunStatus.INCOMPLETE,
    }
)
ACTIVE: frozenset[str] = frozenset(RunStatus.values) - TERMINAL


class Backend(models.TextChoices):
    RESPONSES = "responses", "Responses API"
    ASSISTANTS = "assistants", "Assistants API"


class Strategy(models.TextChoices):
    POLL = "poll", "poll"
    WEBHOOK = "webhook", "webhook (+ safety-net polls)"


class EventSource(models.TextChoices):
    CREATE = "create", "create"
    POLL = "poll", "poll"
    WEBHOOK = "webhook", "webhook"
    TOOL = "tool", "tool"
    SWEEP = "sweep", "sweep"
    USER = "user", "user"
    DEADLINE = "deadline", "deadline"
