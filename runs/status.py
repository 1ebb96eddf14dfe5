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


class CompletionWindow(models.TextChoices):
    """How soon a background response must finish (``background_options.completion_window``).

    ``2h`` and ``8h`` are OpenAI's discounted background windows; ``soonest`` is the default.
    """

    SOONEST = "soonest", "soonest"
    TWO_HOURS = "2h", "within 2 hours (discounted)"
    EIGHT_HOURS = "8h", "within 8 hours (discounted)"


#: A window's length in seconds of the real clock (``RUNS_TIME_SCALE`` compresses it in tests).
WINDOW_S: dict[str, float] = {"2h": 2 * 3600.0, "8h": 8 * 3600.0}
#: The Batch API's one completion window.
BATCH_WINDOW_S = 24 * 3600.0


class Mode(models.TextChoices):
    """How a run is processed and billed: the price table's discounts and the metrics' label."""

    STANDARD = "standard", "standard"
    FLEX = "flex", "flex processing"
    WINDOW_2H = "2h", "2h background window"
    WINDOW_8H = "8h", "8h background window"
    BATCH = "batch", "Batch API"
    #: priority, scale and the other tiers the price table does not model: cost stays null.
    OTHER_TIER = "tier", "another service tier (not priced)"


class BatchStatus(models.TextChoices):
    """A batch's status: ours (``pending``) then the Batch API's own."""

    PENDING = "pending", "pending (not submitted)"
    VALIDATING = "validating", "validating"
    IN_PROGRESS = "in_progress", "in progress"
    FINALIZING = "finalizing", "finalizing"
    COMPLETED = "completed", "completed"
    FAILED = "failed", "failed"
    EXPIRED = "expired", "expired"
    CANCELLING = "cancelling", "cancelling"
    CANCELLED = "cancelled", "cancelled"


BATCH_TERMINAL: frozenset[str] = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
