"""The tracking engine: every tick computes a decision, and one writer applies it.

Modules, each with one job (docs/architecture.md walks a poll tick and a tool round through them):

- ``decisions``  what a tick concluded, as a value;
- ``writer``     the only code that writes tickets, ``next_poll_at`` and counters, moves a status
                 on the engine's behalf, and enqueues the next task;
- ``enqueue``    tasks sent by their registered names (the engine never imports ``tasks``);
- ``lifecycle``  start and poll ticks; ``tool_round`` and ``tool_calls`` the ``requires_action``
                 loop; ``cancel``, ``expiry``, ``events`` (webhook wakes) and ``sweep``.
- ``batch_poll`` batched polling: every due run claimed at once, decided by the per-run tick's
                 code, written back in bulk through ``bulk`` (the writer's set-based statements).
"""
