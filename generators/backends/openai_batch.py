"""OpenAI Batch API: request files out, result files in (half price, 24 h turnaround, for big jobs).

Kept apart from the online client so the file formats can be tested without an endpoint. The
`custom_id` of each line is the request's cache key, which is how results find their way back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from generators.backends.base import CallOutcome, ChatRequest

CHAT_ENDPOINT = "/v1/chat/completions"


# How each response-format mode is written on the wire, and which servers take it (docs/generators.md).
RESPONSE_FORMS: dict[str, str] = {
    "none": "no response_format: the prompt alone asks for JSON",
    "json_object": '{"type": "json_object"} (OpenAI JSON mode; vLLM; llama.cpp): valid JSON, schema not enforced',
    "json_schema": '{"type": "json_schema", "json_schema": {"name", "schema", "strict"}} (OpenAI structured outputs; vLLM; llama.cpp llama-server)',
    "json_object_schema": '{"type": "json_object", "schema": ...} (llama-cpp-python server; llama.cpp llama-server)',
    "guided_json": '"guided_json": <schema> beside the messages (vLLM\'s own parameter)',
}


def chat_body(request: ChatRequest) -> dict[str, Any]:
    """The chat-completions body for a request; shared by online calls and batch lines.

    Built from the request alone (its `response_format` option included), so every field sent is
    part of the request's cache key.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.message_dicts(),
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }
    mode = request.option("response_format", "none")
    schema = request.schema_dict()
    if mode == "json_object" or (mode in ("json_object_schema", "json_schema", "guided_json") and schema is None):
        body["response_format"] = {"type": "json_object"}
    elif mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "example", "schema": schema, "strict": False},
        }
    elif mode == "json_object_schema":
        body["response_format"] = {"type": "json_object", "schema": schema}
    elif mode == "guided_json":
        body["guided_json"] = schema
    elif mode != "none":
        raise ValueError(f"unknown response_format mode {mode!r}")
    return body


def build_batch_lines(requests: Iterable[ChatRequest]) -> list[str]:
    """One JSONL line per request, in the Batch API input format."""
    lines = []
    for req in requests:
        line = {"custom_id": req.key, "method": "POST", "url": CHAT_ENDPOINT, "body": chat_body(req)}
        lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    return lines


def parse_batch_output(text: str, requests: Mapping[str, ChatRequest]) -> list[CallOutcome]:
    """Turn a Batch API output (or error) file into outcomes; requests absent from it are failures.

    A line that cannot be read is skipped rather than trusted; its request then counts as failed.
    """
    seen: dict[str, CallOutcome] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            cid = item["custom_id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        req = requests.get(cid)
        if req is None or cid in seen:
            continue
        resp = item.get("response") or {}
        err = item.get("error")
        status = resp.get("status_code")
        body = resp.get("body") or {}
        if err or status != 200 or not isinstance(body, dict):
            msg = (err or {}).get("message") if isinstance(err, dict) else None
            seen[cid] = CallOutcome(req, ok=False, error=f"batch: status {status}: {msg or 'error'}", batch=True)
            continue
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"]
            usage = body.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            seen[cid] = CallOutcome(req, ok=False, error="batch: malformed response body", batch=True)
            continue
        if content is None:
            seen[cid] = CallOutcome(req, ok=False, error="batch: empty content", batch=True)
            continue
        seen[cid] = CallOutcome(
            req,
            ok=True,
            text=content,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            batch=True,
        )
    for cid, req in requests.items():
        if cid not in seen:
            seen[cid] = CallOutcome(req, ok=False, error="batch: no result line", batch=True)
    return list(seen.values())
