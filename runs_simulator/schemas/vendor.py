"""Regenerate ``openai_subset.json`` from OpenAI's OpenAPI description.

Why: the simulator's answers are checked against the real API's schemas, but a user's
clone does not have the (3 MB) OpenAPI file, so the few schemas we need (and everything
they reference) are vendored. Descriptions and examples are dropped to keep the file
small, and OpenAPI 3.0 ``nullable`` is rewritten to JSON Schema ``anyOf [..., null]`` so
a standard Draft 2020-12 validator understands it.

Usage: ``python -m runs_simulator.schemas.vendor PATH/TO/openapi.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOTS = (
    "Response",
    "RunObject",
    "ThreadObject",
    "MessageObject",
    "ErrorResponse",
    "ConversationResource",
    "ConversationItemList",
    "ConversationItem",
    "WebhookResponseCompleted",
    "WebhookResponseFailed",
    "WebhookResponseCancelled",
    "WebhookResponseIncomplete",
    "Batch",
    "ListBatchesResponse",
    "OpenAIFile",
    "ListFilesResponse",
    "DeleteFileResponse",
    "WebhookBatchCompleted",
    "WebhookBatchFailed",
    "WebhookBatchExpired",
    "WebhookBatchCancelled",
)
WEBHOOKS = ("response_completed", "response_failed", "response_cancelled", "response_incomplete")
DROP_KEYS = {
    "description",
    "example",
    "examples",
    "x-oaiMeta",
    "title",
    "x-oaiTypeLabel",
    "x-stainless-const",
    "x-oaiSupportedSDKs",
    "x-oaiExpandable",
    "deprecated",
}
PREFIX = "#/components/schemas/"
OUTPUT = Path(__file__).with_name("openai_subset.json")


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            found.add(ref[len(PREFIX) :])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    """Names of ``roots`` and every schema they reference, transitively."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(schemas[name], found)
        stack.extend(found - seen)
    return sorted(seen)


def clean(node: Any, *, names: bool = False) -> Any:
    """Drop prose keys and turn ``nullable: true`` into ``anyOf [..., {type: null}]``.

    ``names`` is true for mappings whose keys are property names (``properties``), where a
    property called ``description`` or ``title`` must be kept.
    """
    if isinstance(node, list):
        return [clean(value) for value in node]
    if not isinstance(node, dict):
        return node
    if names:
        return {key: clean(value) for key, value in node.items()}
    out = {
        key: clean(value, names=key in ("properties", "patternProperties", "$defs"))
        for key, value in node.items()
        if key not in DROP_KEYS
    }
    members = out.get("allOf")
    if isinstance(members, list) and {"nullable": True} in members:
        rest = [m for m in members if m != {"nullable": True}]
        others = {k: v for k, v in out.items() if k != "allOf"}
        return {**others, "anyOf": [{"allOf": rest}, {"type": "null"}]}
    if out.pop("nullable", False) is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def build(openapi: dict[str, Any]) -> dict[str, Any]:
    """The vendored document: ``components.schemas`` subset plus the response webhooks."""
    schemas = openapi["components"]["schemas"]
    names = closure(schemas, ROOTS)
    return {
        "info": {
            "source": "OpenAI OpenAPI description",
            "version": openapi["info"]["version"],
            "license": "MIT (see LICENSE in this folder)",
            "roots": list(ROOTS),
        },
        "webhooks": {name: openapi["webhooks"][name] for name in WEBHOOKS},
        "components": {"schemas": {name: clean(schemas[name]) for name in names}},
    }


def main(argv: list[str]) -> int:
    """CLI: write ``openai_subset.json`` next to this file."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    openapi = json.loads(Path(argv[0]).read_text())
    document = build(openapi)
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT.name}: {len(document['components']['schemas'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
