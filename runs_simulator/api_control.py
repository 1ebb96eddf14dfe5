"""The ``/_sim`` control plane: health, stats, reset and runtime config.

Why outside ``/v1``: these calls are for tests and benchmarks, never faulted, never
counted as API calls, and need no API key.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .assistant_service import refresh
from .batch_service import settle
from .routing import sim_state
from .state import SimState


def _object_status(
    state: SimState, object_id: str, kind: str, now: float
) -> tuple[str | None, float | None]:
    """Current status and terminal time of a tracked object (lazy, like every read)."""
    if kind == "response":
        record = state.stores.responses.get(object_id)
        if record is None:
            return None, None
        return record.status(now), record.terminal_at(now)
    if kind == "run":
        run = state.stores.runs.get(object_id)
        if run is None:
            return None, None
        refresh(state, run)  # same path as a read: posts the reply message once
        return run.status, run.terminal_at
    if kind == "batch":
        batch = state.stores.batches.get(object_id)
        if batch is None:
            return None, None
        settle(state, batch, now)  # same path as a read: writes the files once
        status = batch.status(now)
        return status, batch.terminal_at() if now >= batch.terminal_at() else None
    return None, None


def snapshot(state: SimState, include_objects: bool = True) -> dict[str, Any]:
    """The whole stats document (see README for the shape)."""
    now = state.now()
    stats = state.stats
    objects: dict[str, Any] = {}
    if include_objects:
        for object_id, entry in stats.objects.items():
            status, terminal_at = _object_status(state, object_id, entry.kind, now)
            row: dict[str, Any] = {"kind": entry.kind, **entry.counts}
            row.update(
                status=status,
                created_at=entry.created_at,
                terminal_at=terminal_at,
                metadata_run_id=entry.metadata_run_id,
            )
            objects[object_id] = row
    pending = state.webhooks.pending() if state.webhooks is not None else 0
    return {
        "calls": dict(stats.calls),
        "objects": objects,
        "creates_by_run_id": dict(stats.creates_by_run_id),
        "tool_outputs_by_call_id": dict(stats.tool_outputs_by_call_id),
        "batch_lines_by_custom_id": dict(stats.batch_lines_by_custom_id),
        "faults": dict(stats.faults),
        "webhooks": {**stats.webhooks, "pending_timers": pending},
        "latency": stats.latency(),
        "now": now,
    }


async def health(request: Request) -> Response:
    """Liveness probe."""
    return JSONResponse({"ok": True})


async def stats(request: Request) -> Response:
    """``GET /_sim/stats`` (``?objects=0`` leaves out the per-object table)."""
    include = request.query_params.get("objects", "1") not in ("0", "false")
    return JSONResponse(snapshot(sim_state(request), include))


async def _optional_json(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def reset(request: Request) -> Response:
    """``POST /_sim/reset``: clear state; ``{"keep_config": true}`` keeps runtime config."""
    body = await _optional_json(request)
    if body is None:
        return JSONResponse({"ok": False, "error": "body must be a JSON object"}, 400)
    sim_state(request).reset(keep_config=bool(body.get("keep_config", False)))
    return JSONResponse({"ok": True})


async def config(request: Request) -> Response:
    """``GET``/``POST /_sim/config``: read or update (secret masked in answers)."""
    state = sim_state(request)
    if request.method == "POST":
        body = await _optional_json(request)
        if body is None:
            return JSONResponse({"ok": False, "error": "body must be a JSON object"}, 400)
        try:
            state.update_config(body)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 400)
    return JSONResponse(state.config.public())


routes = [
    Route("/_sim/health", health, methods=["GET"]),
    Route("/_sim/stats", stats, methods=["GET"]),
    Route("/_sim/reset", reset, methods=["POST"]),
    Route("/_sim/config", config, methods=["GET", "POST"]),
]
