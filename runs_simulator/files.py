"""Files (``/v1/files``): uploads for batches, and the output and error files batches write.

Why the simulator has them: the Batch API reads its requests from an uploaded JSONL file
(purpose ``batch``) and answers in files (purpose ``batch_output``), so a client that submits
batches uploads, reads and deletes files. Shapes are the SDK's ``FileObject`` and
``FileDeleted`` (and the OpenAPI description's ``OpenAIFile``). Content is kept in memory,
exactly as uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import multipart, pages
from .errors import bad_request, not_found
from .ids import alnum_id
from .state import SimState

#: What ``POST /v1/files`` accepts (the SDK's ``FilePurpose``).
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_MAX_BYTES = 200 * 1024 * 1024
#: Files of purpose ``batch`` (and batch outputs) expire after 30 days unless told otherwise.
BATCH_FILE_TTL_S = 30 * 24 * 3600
EXPIRES_MIN_S, EXPIRES_MAX_S = 3600, 30 * 24 * 3600


@dataclass
class FileRecord:
    """One stored file."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int
    expires_at: int | None

    def render(self) -> dict[str, Any]:
        """``FileObject``."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def new_id(state: SimState) -> str:
    """``file-`` + 22 alphanumerics, the API's file id style."""
    return "file-" + alnum_id(state.rng, "f", 22)[2:]


def _expires_after(fields: dict[str, multipart.Part], created: int) -> int | None:
    """``expires_after[anchor]`` / ``expires_after[seconds]`` (form fields), checked."""
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor is None or anchor.text != "created_at":
        raise bad_request(
            "Invalid 'expires_after.anchor': expected 'created_at'.", "expires_after.anchor"
        )
    try:
        value = int(seconds.text) if seconds is not None else -1
    except ValueError:
        value = -1
    if not EXPIRES_MIN_S <= value <= EXPIRES_MAX_S:
        raise bad_request(
            f"Invalid 'expires_after.seconds': expected an integer between {EXPIRES_MIN_S} and "
            f"{EXPIRES_MAX_S}.",
            "expires_after.seconds",
        )
    return created + value


def upload(state: SimState, content_type: str, body: bytes) -> FileRecord:
    """``POST /v1/files`` (multipart): every field checked before the file is stored."""
    try:
        fields = multipart.parse(content_type, body)
    except ValueError as exc:
        raise bad_request(f"Invalid multipart/form-data body: {exc}.") from None
    purpose = fields["purpose"].text if "purpose" in fields else None
    if purpose is None:
        raise bad_request("Missing required parameter: 'purpose'.", "purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise bad_request(
            f"Invalid value for 'purpose': {purpose!r}. Supported values are: "
            + ", ".join(f"'{p}'" for p in UPLOAD_PURPOSES)
            + ".",
            "purpose",
        )
    part = fields.get("file")
    if part is None or part.filename is None:
        raise bad_request("Missing required parameter: 'file'.", "file")
    if purpose == "batch":
        if not part.filename.endswith(".jsonl"):
            raise bad_request("Invalid file format for Batch API. Must be .jsonl", "file")
        if len(part.data) > BATCH_MAX_BYTES:
            raise bad_request("File is too large for the Batch API (max 200 MB).", "file")
    now = int(state.now())
    expires = _expires_after(fields, now)
    if expires is None and purpose == "batch":
        expires = now + BATCH_FILE_TTL_S
    record = FileRecord(new_id(state), part.filename, purpose, part.data, now, expires)
    state.stores.files[record.id] = record
    state.stats.register(record.id, "file", state.now(), None)
    return record


def store_output(
    state: SimState, filename: str, content: bytes, created: float, ttl_s: int | None
) -> FileRecord:
    """A file the simulator writes itself (a batch's output or error file)."""
    created_at = int(created)
    expires = created_at + (ttl_s if ttl_s is not None else BATCH_FILE_TTL_S)
    record = FileRecord(new_id(state), filename, "batch_output", content, created_at, expires)
    state.stores.files[record.id] = record
    return record


def get(state: SimState, file_id: str) -> FileRecord:
    """Look a file up, or 404 as the API words it."""
    record = state.stores.files.get(file_id)
    if record is None:
        raise not_found(f"No such File object: {file_id}", "id")
    return record


def delete(state: SimState, file_id: str) -> dict[str, Any]:
    """``DELETE /v1/files/{id}``: ``FileDeleted``."""
    get(state, file_id)
    del state.stores.files[file_id]
    return {"id": file_id, "object": "file", "deleted": True}


def list_page(state: SimState, params: dict[str, str]) -> dict[str, Any]:
    """``GET /v1/files?purpose=&order=&after=&limit=`` (newest first by default)."""
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request("Invalid 'order': expected 'asc' or 'desc'.", "order")
    chosen = [
        record
        for record in state.stores.files.values()
        if not params.get("purpose") or record.purpose == params["purpose"]
    ]
    if order == "desc":
        chosen.reverse()
    return pages.page(
        chosen,
        params,
        FileRecord.render,
        lambda record: record.id,
        default=10000,
        maximum=10000,
    )
