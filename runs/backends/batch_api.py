"""The Batch API and the Files API it needs: upload the input, create, find, retrieve and cancel a
batch, download its output and error files.

Not a ``base.Backend``: a batch is not a run (it has no thread, no tool round, no per-run
retrieve), so it is not in the registry; ``runs.engine.batch_lifecycle`` calls these functions
directly. The rules are the backends' all the same: each function makes exactly the calls it
names (``find`` says how many), no retries, no sleeps, no row writes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import httpx2
import openai
from openai.types import Batch as OpenAIBatch

from ..client import get_client, get_create_client, get_file_client
from .common import when

#: The endpoint every line of our batches calls, and the Batch API's only window.
ENDPOINT = "/v1/responses"
WINDOW = "24h"
#: The batch's metadata key naming our ``Batch`` row: how a retried submit finds its batch.
BATCH_ID_KEY = "runs_batch_id"
#: Batches per page when a retried submit looks for the one a lost answer created.
PAGE_SIZE = 100
#: Bytes read at a time from a file's content while it is written to disk.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class RemoteBatch:
    """What one answer of the Batch API said about a batch."""

    remote_id: str
    status: str
    input_file_id: str = ""
    output_file_id: str = ""
    error_file_id: str = ""
    request_counts: dict[str, int] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    expires_at: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def files_and_counts(self) -> dict[str, Any]:
        """The ``Batch`` columns this answer updates: its counts, and its file ids once known."""
        files = {"output_file_id": self.output_file_id, "error_file_id": self.error_file_id}
        return {"request_counts": self.request_counts, **{k: v for k, v in files.items() if v}}


def to_remote(batch: OpenAIBatch) -> RemoteBatch:
    errors = [e.model_dump() for e in (batch.errors.data or [])] if batch.errors else []
    return RemoteBatch(
        remote_id=batch.id,
        status=batch.status,
        input_file_id=batch.input_file_id or "",
        output_file_id=batch.output_file_id or "",
        error_file_id=batch.error_file_id or "",
        request_counts=batch.request_counts.model_dump() if batch.request_counts else None,
        errors=errors,
        expires_at=when(batch.expires_at),
        metadata=dict(batch.metadata or {}),
    )


def upload(name: str, data: bytes) -> str:
    """One upload of the input JSONL (purpose ``batch``); the file's id. The file client's
    deadline (``RUNS_BATCH_FILE_TIMEOUT_S``): an input file may hold 200 MB."""
    return get_file_client().files.create(file=(name, data), purpose="batch").id


def create(input_file_id: str, batch_id: int) -> RemoteBatch:
    """One create: the uploaded file's lines, run against ``/v1/responses`` within 24 h, tagged
    with our batch id."""
    batch = get_create_client().batches.create(
        input_file_id=input_file_id,
        endpoint=ENDPOINT,
        completion_window=WINDOW,
        metadata={BATCH_ID_KEY: str(batch_id)},
    )
    return to_remote(batch)


def find(batch_id: int, input_file_id: str, pages: int) -> tuple[RemoteBatch | None, int]:
    """Look through the newest ``pages`` pages of batches for one that a submit of ours created
    from ``input_file_id`` (its answer was lost); (the batch or None, the list calls made).

    Both the metadata and the input file must match: another installation's batch may carry the
    same row id, never the same uploaded file.
    """
    page = get_client().batches.list(limit=PAGE_SIZE)
    calls = 1
    while True:
        for batch in page.data:
            meta = batch.metadata or {}
            if meta.get(BATCH_ID_KEY) == str(batch_id) and batch.input_file_id == input_file_id:
                return to_remote(batch), calls
        if calls >= pages or not page.has_next_page():
            return None, calls
        page = page.get_next_page()
        calls += 1


def retrieve(remote_id: str) -> RemoteBatch:
    return to_remote(get_client().batches.retrieve(remote_id))


def cancel(remote_id: str) -> RemoteBatch:
    return to_remote(get_client().batches.cancel(remote_id))


@contextmanager
def download(file_id: str) -> Iterator[IO[bytes]]:
    """One download of an output or error file's content, streamed to a temporary file (deleted
    on exit) that is handed over rewound: the output of 50,000 responses may hold hundreds of
    megabytes, which need not sit in memory twice (raw and decoded). The file client's deadline
    (``RUNS_BATCH_FILE_TIMEOUT_S``) bounds the whole transfer. A body cut off while it streams
    raises what the SDK raises for a call cut off before its answer (``APITimeoutError``,
    ``APIConnectionError``), so the error policy reads both alike."""
    with tempfile.TemporaryFile() as sink:
        with get_file_client().files.with_streaming_response.content(file_id) as response:
            request = response.http_response.request
            try:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    sink.write(chunk)
            except httpx2.TimeoutException as exc:
                raise openai.APITimeoutError(request=request) from exc
            except httpx2.TransportError as exc:
                raise openai.APIConnectionError(request=request) from exc
        sink.seek(0)
        yield sink
