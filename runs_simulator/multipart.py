"""A small ``multipart/form-data`` reader for ``POST /v1/files``.

Why here and not Starlette's ``request.form()``: that needs ``python-multipart``, one more
dependency of the simulator for one endpoint. Uploads come from the SDK (httpx's encoder): parts
separated by the boundary, each with a ``Content-Disposition`` naming the field (and, for the
file, its filename). The part's bytes are kept exactly as sent: a JSONL file's line endings are
its content.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value


@dataclass(frozen=True)
class Part:
    """One form field: its bytes, and its filename when it is a file."""

    data: bytes
    filename: str | None = None

    @property
    def text(self) -> str:
        """The field as text (form values are UTF-8)."""
        return self.data.decode("utf-8", "replace")


def _param(headers: Message, name: str) -> str | None:
    value = headers.get_param(name, header="content-disposition")
    if value is None:
        return None
    return collapse_rfc2231_value(value)


def parse(content_type: str, body: bytes) -> dict[str, Part]:
    """The fields of a form-data body, by name; ``ValueError`` when it is not one."""
    envelope = Message()
    envelope["content-type"] = content_type
    boundary = envelope.get_param("boundary")
    if envelope.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise ValueError("expected a multipart/form-data body with a boundary")
    fields: dict[str, Part] = {}
    chunks = body.split(b"--" + boundary.encode("latin-1"))
    if len(chunks) < 2:
        raise ValueError("the body holds no part")
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        chunk = chunk.removeprefix(b"\r\n")
        head, separator, data = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise ValueError("a part has no header/body separator")
        headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip():
                headers[key.strip()] = value.strip()
        name = _param(headers, "name")
        if name is None:
            raise ValueError("a part has no name")
        fields[name] = Part(data.removesuffix(b"\r\n"), _param(headers, "filename"))
    return fields
