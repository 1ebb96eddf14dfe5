"""What both API backends share: the metadata we tag remote objects with, the server's poll hint,
timestamps and the tool and instruction arguments every request repeats."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..client import get_client, get_create_client
from ..status import WINDOW_S
from ..tools import tools_for

if TYPE_CHECKING:
    import openai

    from ..models import Run

#: OpenAI accepts at most 16 metadata pairs of strings (values up to 512 characters).
MAX_METADATA_KEYS = 16


def remote_metadata(run: Run) -> dict[str, str]:
    """Our run id plus the caller's metadata, as the strings OpenAI requires."""
    meta = {"run_id": str(run.pk)}
    for key, value in (run.metadata or {}).items():
        if len(meta) >= MAX_METADATA_KEYS:
            break
        meta.setdefault(str(key)[:64], str(value)[:512])
    return meta


def parse_poll_after(headers: Any) -> int | None:
    """The ``openai-poll-after-ms`` header as milliseconds; None when absent or not a number."""
    value = headers.get("openai-poll-after-ms")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def when(timestamp: int | float | None) -> datetime | None:
    """A Unix timestamp from the API as an aware datetime (None and 0 mean "not yet")."""
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def tool_specs(run: Run, shape: str) -> list[dict[str, Any]]:
    """The run's registered tools in the API's ``shape`` ("responses" or "assistants")."""
    tools = tools_for(run.tools or [])
    if shape == "assistants":
        return [t.assistants_spec() for t in tools]
    return [t.responses_spec() for t in tools]


def request_options(run: Run, *, background: bool) -> dict[str, Any]:
    """The run's options (runs/options.py validated them) as keys of a ``responses.create`` body.

    Only what the run set is sent, so an unset option keeps the API's (or the project's) default.
    ``background_options`` goes only with a 2h/8h window on a background request: the windows
    are background execution by definition, and a Batch API line (``background=False``) runs
    under the batch's own 24 h window, which a per-request window would contradict.
    """
    kwargs: dict[str, Any] = {}
    if run.response_format:
        fmt = run.response_format
        text_format: dict[str, Any] = {
            "type": "json_schema",
            "name": fmt["name"],
            "schema": fmt["schema"],
            "strict": bool(fmt.get("strict", True)),
        }
        if fmt.get("description"):
            text_format["description"] = fmt["description"]
        kwargs["text"] = {"format": text_format}
    if run.reasoning_effort:
        kwargs["reasoning"] = {"effort": run.reasoning_effort}
    if run.max_output_tokens:
        kwargs["max_output_tokens"] = run.max_output_tokens
    if run.prompt_cache_key:
        kwargs["prompt_cache_key"] = run.prompt_cache_key
    if run.safety_identifier:
        kwargs["safety_identifier"] = run.safety_identifier
    if run.service_tier:
        kwargs["service_tier"] = run.service_tier
    if background and run.completion_window in WINDOW_S:
        kwargs["background_options"] = {"completion_window": run.completion_window}
    return kwargs


def warm_sdk(
    resources: Sequence[str], answers: Sequence[tuple[type[openai.BaseModel], dict[str, Any]]]
) -> None:
    """Load the SDK's ``resources`` (dotted paths on a client, imported on first use) on both our
    clients, and parse each sample answer into its model as the SDK parses a real one, which
    builds the model's schema and the adapters of the unions its fields hold (the output items),
    with no API call (``Backend.warm`` says why)."""
    for client in (get_client(), get_create_client()):
        for path in resources:
            obj: object = client
            for part in path.split("."):
                obj = getattr(obj, part)
    for model, sample in answers:
        model.construct(**sample)
