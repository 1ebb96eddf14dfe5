"""Threads, messages, runs, batches, the transition log and webhook deliveries.

Models hold fields and ``Meta``; status changes live in ``states.py``, the engine's writes in
``engine/writer.py``, ``engine/tool_calls.py`` and ``engine/batch_writer.py``, named queries in
``managers.py``. One module per family of rows; import them from here.
"""

from .batches import Batch
from .runs import Run, RunEvent, ToolCall
from .threads import Message, Thread
from .webhooks import WebhookEvent

__all__ = ["Batch", "Message", "Run", "RunEvent", "Thread", "ToolCall", "WebhookEvent"]
