"""What every backend takes and returns: one chat request in, one call outcome out.

The request is the unit of caching: its key is the sha256 of exactly what determines the answer
(model — an endpoint's model name, or a local model's content digest —, messages, sampling
parameters, seed, response schema, and the backend options that shape the answer, from
`generators.identity.request_options`: response-format mode, repetition penalty, constrained
decoding, sampler) and nothing else, so neither secrets nor endpoints enter it. Backends build what they send from the
request alone, never from their config, so nothing sent can be missing from the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion call as the pipeline means it, independent of any endpoint."""

    model: str
    messages: tuple[tuple[str, str], ...]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    response_schema: str | None = None  # canonical JSON text of the schema, or None
    # Backend options that change the answer (sorted (name, value) pairs), e.g. the OpenAI
    # response-format mode or the local backend's repetition penalty; part of the key.
    options: tuple[tuple[str, Any], ...] = ()
    tag: str = field(default="", compare=False)  # the pipeline's bookkeeping; not part of the key

    def canonical(self) -> dict[str, Any]:
        """The exact request content the cache key and the cached request are made of."""
        return {
            "model": self.model,
            "messages": [{"role": r, "content": c} for r, c in self.messages],
            "params": {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens},
            "seed": self.seed,
            "response_schema": json.loads(self.response_schema) if self.response_schema else None,
            "options": dict(self.options),
        }

    def option(self, name: str, default: Any = None) -> Any:
        """One backend option as the key recorded it."""
        return dict(self.options).get(name, default)

    @cached_property
    def key(self) -> str:
        """sha256 of the canonical request: equal keys mean the same call (computed once per request)."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def schema_dict(self) -> dict[str, Any] | None:
        return json.loads(self.response_schema) if self.response_schema else None


@dataclass
class CallOutcome:
    """The result of one call: text and usage when it succeeded, a reason when it finally failed."""

    request: ChatRequest
    ok: bool
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    error: str | None = None
    cached: bool = False
    batch: bool = False


BUSY: Literal["busy"] = "busy"  # CallGate.admit(wait=False): another job is sending this request now


class CallGate(Protocol):
    """What a backend asks just before it sends a request (the pipeline's per-request claim).

    ``admit`` returns None when the request is to be sent (its claim is then held until the
    outcome the backend yields for it has been stored), or the outcome another job stored while
    this one waited (``cached=True``), which the backend yields instead of calling. With
    ``wait=False`` it returns :data:`BUSY` instead of waiting: a backend that holds claims while it
    gathers a batch must not wait for another's, or two jobs could each wait for the other.
    """

    async def admit(self, request: ChatRequest, *, wait: bool = True) -> CallOutcome | None | Literal["busy"]: ...


class Backend(Protocol):
    """A source of completions; yields outcomes as they finish so each can be stored at once."""

    name: str

    def stream(self, requests: Sequence[ChatRequest], gate: CallGate | None = None) -> AsyncIterator[CallOutcome]:
        """Run all requests, yielding each outcome (success or final failure) as soon as it is known;
        ``gate.admit`` is awaited for each request right before it is sent (not earlier: the claims
        held at once stay as few as the calls in flight)."""
        ...

    async def aclose(self) -> None:
        """Release connections or model memory."""
        ...
