"""Any OpenAI-compatible chat endpoint through the official async `openai` client.

Paid APIs punish two things: bursts (429s) and retry storms. Hence a semaphore bounds concurrency,
429s wait as long as the server's Retry-After says, other transient errors back off exponentially
with jitter, each call has a timeout and an attempt cap, and the whole job shares a finite retry
budget so a dead endpoint ends the job instead of looping forever. The client's own retries are
off so every attempt is counted here.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import Any

from generators.backends.base import CallGate, CallOutcome, ChatRequest
from generators.backends.openai_batch import CHAT_ENDPOINT, build_batch_lines, chat_body, parse_batch_output
from generators.config import OpenAIBackendConfig
from generators.errors import BackendUnavailableError

log = logging.getLogger(__name__)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_KEYLIKE = re.compile(r"(sk-[A-Za-z0-9_\-]{4,}|Bearer\s+\S+)")
_INVALID_STATUS = (400, 404, 413, 422)
_INVALID_MESSAGE = re.compile(r"validation error|invalid[_ ]request", re.IGNORECASE)


def server_message(body: Any, fallback: str = "", secret: str | None = None, limit: int = 300) -> str:
    """The server's own words from an error body (OpenAI `error.message`, FastAPI `detail`), keys removed.

    Servers explain why they refused (llama.cpp: which response_format field it rejects); a manifest
    that says only "HTTP 500" leaves the user guessing.
    """
    msg: Any = body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err
        else:
            msg = err
        if isinstance(msg, list):  # FastAPI validation: [{"loc": [...], "msg": "..."}]
            msg = "; ".join(
                f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" if isinstance(d, dict) else str(d) for d in msg
            )
    text = str(msg) if msg not in (None, "", {}) else fallback
    if secret:
        text = text.replace(secret, "***")
    text = _KEYLIKE.sub("***", " ".join(text.split()))
    return text[:limit] + ("..." if len(text) > limit else "")


def is_invalid_request(status: int, body: Any, message: str) -> bool:
    """True when the server says the request itself is wrong; resending it cannot help.

    The status alone is not enough: llama-cpp-python's server answers a request that fails its
    validation (e.g. response_format.type json_schema) with HTTP 500.
    """
    if status in _INVALID_STATUS:
        return True
    err = body.get("error") if isinstance(body, dict) else None
    kind = str(err.get("type") or err.get("code") or "") if isinstance(err, dict) else ""
    return "invalid_request" in kind or bool(_INVALID_MESSAGE.search(message))


class RetryBudget:
    """A job-wide allowance of retries; once spent, transient errors become final failures."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self) -> bool:
        if self.used >= self.total:
            return False
        self.used += 1
        return True


class OpenAIBackend:
    """Online chat completions (or the Batch API with `mode: batch`) against an OpenAI-compatible URL."""

    def __init__(self, config: OpenAIBackendConfig, journal: MutableMapping[str, str] | None = None) -> None:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - openai is a core dependency
            raise BackendUnavailableError("the openai package is not installed: pip install openai") from exc
        self.config = config
        model = config.resolved_model()
        self.model_name: str = model
        self.name = f"openai:{model}"
        base_url = config.base_url
        if config.base_url_env and os.environ.get(config.base_url_env):
            base_url = os.environ[config.base_url_env]
        api_key = os.environ.get(config.api_key_env)
        if not api_key:
            # Local servers (vLLM, Ollama) accept any key; a real API will answer 401, counted as failures.
            log.warning("$%s is not set; sending a placeholder key", config.api_key_env)
            api_key = "unset"
        self._client = AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=config.timeout_s
        )
        self._secret = api_key if api_key != "unset" else None  # only to scrub it from server messages
        del api_key
        self.budget = RetryBudget(config.retry_budget)
        self._journal = journal
        self._sem: asyncio.Semaphore | None = None

    # -- online -------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempt - 1)))
        return cap / 2 + random.uniform(0, cap / 2)

    async def _call(self, req: ChatRequest) -> CallOutcome:
        import openai
        from openai.types.chat import ChatCompletion

        assert self._sem is not None
        attempt = 0
        last_error = "unknown"
        t0 = time.perf_counter()
        while True:
            attempt += 1
            delay: float | None = None
            retryable = False
            try:
                async with self._sem:
                    # The client's low-level post: same endpoint, auth and errors as
                    # chat.completions.create, minus its per-call TypedDict transform of the body
                    # (~1 ms of CPU a call, the bottleneck at 100+ calls/s on a small machine).
                    resp = await self._client.post(
                        "/chat/completions",
                        cast_to=ChatCompletion,
                        body=chat_body(req),
                        options={"headers": {"X-Request-Key": req.key}},
                    )
                choice = resp.choices[0] if resp.choices else None
                content = choice.message.content if choice is not None and choice.message else None
                if content is None:
                    last_error = "empty completion"
                    retryable = True
                else:
                    usage = resp.usage
                    return CallOutcome(
                        req, ok=True, text=content, finish_reason=choice.finish_reason,
                        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                        latency_s=time.perf_counter() - t0, attempts=attempt,
                    )
            except openai.RateLimitError as exc:
                last_error = "429 rate limited"
                retryable = True
                delay = parse_retry_after(exc.response.headers)
                if delay is not None:
                    delay += random.uniform(0, 0.1 * delay + 0.01)
            except openai.APITimeoutError:
                last_error = "timeout"
                retryable = True
            except openai.APIConnectionError as exc:
                last_error = f"connection error ({type(exc.__cause__).__name__ if exc.__cause__ else 'closed'})"
                retryable = True
            except openai.APIStatusError as exc:
                detail = server_message(exc.body, fallback=exc.response.text if exc.response is not None else "",
                                        secret=self._secret)
                invalid = is_invalid_request(exc.status_code, exc.body, detail)
                last_error = f"HTTP {exc.status_code}{' invalid request' if invalid else ''}: {detail}" if detail else f"HTTP {exc.status_code}"
                retryable = not invalid and (exc.status_code >= 500 or exc.status_code in (408, 409))
                if retryable:
                    delay = parse_retry_after(exc.response.headers)
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, TypeError, AttributeError) as exc:
                last_error = f"malformed response body ({type(exc).__name__})"
                retryable = True
            if not retryable or attempt >= self.config.max_attempts or not self.budget.take():
                if retryable and attempt < self.config.max_attempts:
                    last_error += "; retry budget exhausted"
                log.warning("call failed after %d attempt(s): %s", attempt, last_error)
                return CallOutcome(req, ok=False, error=last_error, attempts=attempt,
                                   latency_s=time.perf_counter() - t0)
            await asyncio.sleep(delay if delay is not None else self._backoff(attempt))

    async def stream(self, requests: Sequence[ChatRequest], gate: CallGate | None = None) -> AsyncIterator[CallOutcome]:
        """Run requests with at most `concurrency` in flight, yielding outcomes as they finish; each is
        admitted by ``gate`` right before it is sent. Batch mode submits the requests as one batch
        (re-attached through its journal after a kill) and takes no per-request claims: it would hold
        one for every request of the batch, for hours."""
        if self.config.mode == "batch":
            for outcome in await self._run_batch(requests):
                yield outcome
            return
        self._sem = asyncio.Semaphore(self.config.concurrency)
        queue: asyncio.Queue[CallOutcome] = asyncio.Queue()
        pending = iter(requests)

        async def worker() -> None:
            for req in pending:
                answered = await gate.admit(req) if gate is not None else None
                await queue.put(answered if answered is not None else await self._call(req))

        workers = [asyncio.create_task(worker()) for _ in range(min(self.config.concurrency, len(requests)))]
        try:
            for _ in range(len(requests)):
                yield await queue.get()
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    # -- batch ---------------------------------------------------------------------------------
    async def _run_batch(self, requests: Sequence[ChatRequest]) -> list[CallOutcome]:
        """Submit one batch (or re-attach to the one a killed run submitted) and wait for its results."""
        if not requests:
            return []
        by_key = {r.key: r for r in requests}
        job_id = hashlib.sha256("\n".join(sorted(by_key)).encode()).hexdigest()
        batch_id = self._journal.get(f"batch:{job_id}") if self._journal is not None else None
        if batch_id is None:
            data = ("\n".join(build_batch_lines(requests)) + "\n").encode()
            uploaded = await self._client.files.create(file=("requests.jsonl", data), purpose="batch")
            batch = await self._client.batches.create(
                input_file_id=uploaded.id, endpoint=CHAT_ENDPOINT, completion_window="24h"
            )
            batch_id = batch.id
            if self._journal is not None:
                self._journal[f"batch:{job_id}"] = batch_id
            log.info("submitted batch %s with %d requests", batch_id, len(requests))
        while True:
            batch = await self._client.batches.retrieve(batch_id)
            if batch.status in ("completed", "failed", "expired", "cancelled"):
                break
            await asyncio.sleep(self.config.batch_poll_s)
        text = ""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                content = await self._client.files.content(file_id)
                text += content.text + "\n"
        return parse_batch_output(text, by_key)

    async def aclose(self) -> None:
        await self._client.close()
