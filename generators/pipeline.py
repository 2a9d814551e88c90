"""The job: brainstorm task pools, build one request per example, run them cache-first, filter, keep.

Requests are rebuilt identically on every run (`generators.planning`, seeded per example), each is
answered from the response cache when it can be and sent to the backend only when it cannot; every
fresh completion is cached the moment it arrives. Outcomes are judged as they come (parse, language, contamination) and
deduplicated at the end in example order, so the kept set does not depend on completion order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from atomicio import FileLock
from generators.backends.base import BUSY, Backend, CallOutcome, ChatRequest
from generators.config import GenerationConfig
from generators.filters import CONTAMINATED, DUPLICATE, LANGUAGE_MISMATCH, ContaminationFilter, Deduper, LanguageChecker
from generators.output import ExampleRow, RequestCounts, TokenCounts
from generators.parsing import parse_output
from generators.planning import Planned, RequestPlanner
from generators.pricing import PriceTable, price_table
from generators.progress import Progress
from generators.response_cache import CachedResponse, ResponseCache
from generators.taxonomy import TaskType, spec

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_FAILED = "call_failed"
NO_TASK_POOL = "no_task_pool"

@dataclass
class JobResult:
    rows: list[ExampleRow]
    requests: RequestCounts
    rejects: Counter[str]
    rejects_by_type: dict[str, Counter[str]]
    brainstorm: dict[str, int]
    language_id: Counter[str]
    tokens: TokenCounts
    tokens_this_run: TokenCounts
    cost_usd: float
    cost_usd_this_run: float
    unpriced_models: set[str] = field(default_factory=set)
    templates: dict[str, int] = field(default_factory=dict)
    contamination_strings: int = 0
    rejects_by_field: dict[str, Counter[str]] = field(default_factory=dict)
    contamination_reasons: Counter[str] = field(default_factory=Counter)


class CallRunner:
    """Cache-first dispatch: answers from the cache, sends the rest, caches each success at once.

    It is also the backends' :class:`~generators.backends.base.CallGate`: right before a request is
    sent, its key is claimed in the cache and looked up again, so a request another job (a thread,
    process or host sharing the cache) is sending now is waited for and answered from the cache,
    never paid twice; the claim is released once the answer is stored (or the call failed).
    """

    CLAIM_POLL_S = (0.005, 0.25)  # first and longest wait between tries of a claim another job holds

    def __init__(self, backend: Backend, cache: ResponseCache, prices: PriceTable, progress: Progress,
                 batch_discount: float = 0.0) -> None:
        self.backend = backend
        self.cache = cache
        self.prices = prices
        self.progress = progress
        self.batch_discount = batch_discount
        self.counts = RequestCounts()
        self.failed_by_reason: Counter[str] = Counter()
        self.tokens = TokenCounts()
        self.tokens_new = TokenCounts()
        self.cost = 0.0
        self.cost_new = 0.0
        self.unpriced: set[str] = set()
        self._claims: dict[str, FileLock] = {}  # key -> the claim held while that request is sent

    def _account(self, prompt: int, completion: int, cost: float | None, new: bool) -> None:
        for t in (self.tokens, self.tokens_new) if new else (self.tokens,):
            t.prompt += prompt
            t.completion += completion
            t.total += prompt + completion
        if cost is not None:
            self.cost += cost
            if new:
                self.cost_new += cost

    def _answered(self, req: ChatRequest, hit: CachedResponse) -> CallOutcome:
        """Count a request the cache answers (free) and return it as an outcome."""
        self.counts.succeeded += 1
        self.counts.from_store += 1
        if hit.cost_usd is None:
            self.unpriced.add(hit.model)
        self._account(hit.prompt_tokens, hit.completion_tokens, hit.cost_usd, new=False)
        self.progress.update(done=1, tokens=hit.prompt_tokens + hit.completion_tokens, cost=hit.cost_usd or 0.0)
        return CallOutcome(req, ok=True, text=hit.response, finish_reason=hit.finish_reason,
                           prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cached=True)

    async def admit(self, request: ChatRequest, *, wait: bool = True) -> CallOutcome | None | Literal["busy"]:
        """Claim ``request`` (waiting while another job holds it, or :data:`BUSY` without ``wait``),
        then look it up again: None means send it (the claim is held until its outcome is stored),
        else the answer stored meanwhile."""
        claim = self.cache.claim(request.key)
        pause, longest = self.CLAIM_POLL_S
        try:
            while not claim.acquire(block=False):  # polled, not blocking: the event loop keeps running
                if not wait:
                    claim.release()
                    return BUSY
                await asyncio.sleep(pause)
                pause = min(2 * pause, longest)
        except BaseException:  # cancelled while waiting: close the lock file
            claim.release()
            raise
        hit = self.cache.get(request.key)
        if hit is None:
            self._claims[request.key] = claim
            return None
        self.cache.release(claim, answered=True)
        return self._answered(request, hit)

    def _release(self, key: str, *, answered: bool) -> None:
        claim = self._claims.pop(key, None)
        if claim is not None:
            self.cache.release(claim, answered=answered)

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[CallOutcome]:
        unique: dict[str, ChatRequest] = {}
        for r in requests:
            unique.setdefault(r.key, r)
        to_send = []
        for key, req in unique.items():
            self.counts.total += 1
            hit = self.cache.get(key)
            if hit is None:
                to_send.append(req)
                continue
            yield self._answered(req, hit)
        if not to_send:
            return
        try:
            async for out in self.backend.stream(to_send, gate=self):
                if out.cached:  # admit() answered it from the cache: counted there
                    yield out
                    continue
                stored = False
                try:
                    out = self._store(out)
                    stored = out.ok
                finally:
                    self._release(out.request.key, answered=stored)
                yield out
        finally:
            for claim in self._claims.values():  # a stream that stopped early: give back what it still held
                self.cache.release(claim, answered=False)
            self._claims.clear()

    def _store(self, out: CallOutcome) -> CallOutcome:
        """Count a sent request's outcome and cache a success; returns the outcome to use."""
        if not out.ok:
            self.counts.failed += 1
            self.failed_by_reason[(out.error or "unknown").split("; retry budget")[0][:300]] += 1
            self.progress.update(done=1)
            return out
        discount = self.batch_discount if out.batch else 0.0
        cost = self.prices.cost(out.request.model, out.prompt_tokens, out.completion_tokens, discount)
        if cost is None:
            self.unpriced.add(out.request.model)
        kept, ours = self.cache.put(out, cost)
        if not ours:  # another job answered this request first: use its answer, as its re-run will
            out = CallOutcome(out.request, ok=True, text=kept.response, finish_reason=kept.finish_reason,
                              prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                              latency_s=out.latency_s, attempts=out.attempts, batch=out.batch)
        self.counts.succeeded += 1
        self.counts.new_calls += 1
        self._account(out.prompt_tokens, out.completion_tokens, cost, new=True)
        self.progress.update(done=1, tokens=out.prompt_tokens + out.completion_tokens, cost=cost or 0.0)
        return out


class Job:
    """One generation job over a config, a backend and a response cache."""

    def __init__(self, cfg: GenerationConfig, backend: Backend, cache: ResponseCache, progress: Progress,
                 contamination: ContaminationFilter | None = None, planner: RequestPlanner | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.planner = planner or RequestPlanner(cfg)
        self.model = self.planner.model
        prices = price_table(cfg.prices)
        discount = float(getattr(cfg.backend, "batch_discount", 0.0))
        self.runner = CallRunner(backend, cache, prices, progress, batch_discount=discount)
        self.progress = progress
        self.rejects: Counter[str] = Counter()
        self.rejects_by_type: dict[str, Counter[str]] = defaultdict(Counter)
        self.lang_stats: Counter[str] = Counter()
        self.rejects_by_field: dict[str, Counter[str]] = defaultdict(Counter)
        self.contamination_reasons: Counter[str] = Counter()
        # The language-ID model takes ~0.3-0.5 s to decompress and load (LZMA releases the GIL); it
        # is first needed when the first completion comes back, so it loads in a thread meanwhile
        # instead of delaying the first call.
        self.lang_checker: LanguageChecker | None = None
        self._lang_loading = _in_thread(LanguageChecker, cfg.filters.language_min_chars) if cfg.filters.language_id else None
        if contamination is None and cfg.filters.contamination:
            contamination = ContaminationFilter(cfg.filters.contamination)
        self.contamination = contamination

    def _wrong_language_fields(self, p: Planned, fields: dict[str, str]) -> list[str]:
        """Fields identified as another language than asked, each judged on its own text.

        A field too short to identify passes unchecked (counted); joining fields would let a short
        query in the wrong language hide beside two long documents in the right one. Bitext wants
        the query in the source language and the documents in the target; classification labels
        are too short to identify, so only its input text is checked.
        """
        assert self.lang_checker is not None
        if p.task_type == TaskType.CLASSIFICATION:
            fields = {"query": fields["query"]}
        wrong = []
        for name, text in fields.items():
            lang = p.language if name == "query" or not spec(p.task_type).bilingual else (p.target_language or p.language)
            ok, detected = self.lang_checker.check(text, lang)
            if ok is None:
                self.lang_stats[f"unchecked_{name}"] += 1
                continue
            self.lang_stats[f"checked_{name}"] += 1
            if not ok:
                self.lang_stats[f"detected_{detected}_for_{lang}"] += 1
                wrong.append(name)
        return wrong

    def _reject(self, task_type: TaskType | str, reason: str) -> None:
        self.rejects[reason] += 1
        self.rejects_by_type[str(getattr(task_type, "value", task_type))][reason] += 1
        self.progress.update(rejected=1)

    # -- step one -------------------------------------------------------------------------------
    async def brainstorm(self) -> tuple[dict[TaskType, list[str]], dict[str, int]]:
        planned = self.planner.brainstorm_requests()
        self.progress.add_total(len(planned))
        answers: dict[str, tuple[str, str | None]] = {}
        async for out in self.runner.run([r for _, r in planned]):
            if out.ok:
                answers[out.request.key] = (out.text, out.finish_reason)
        pools, stats = self.planner.pools(planned, answers)
        return pools, dict(stats)

    # -- step two -------------------------------------------------------------------------------
    def plan(self, pools: dict[TaskType, list[str]]) -> tuple[list[Planned], int]:
        plans, skipped = self.planner.examples(pools)
        for tt in skipped:
            self._reject(tt, NO_TASK_POOL)
        return plans, len(skipped)

    def _judge(self, p: Planned, out: CallOutcome) -> ExampleRow | None:
        tspec = spec(p.task_type)
        if not out.ok:
            self._reject(p.task_type, CALL_FAILED)
            return None
        parsed = parse_output(out.text, tspec.schema, out.finish_reason)
        if parsed.value is None:
            self._reject(p.task_type, parsed.reason or "invalid")
            return None
        v = parsed.value
        query = getattr(v, tspec.query_field)
        pos = getattr(v, tspec.positive_field)
        neg = getattr(v, tspec.negative_field)
        fields = {"query": query, "positive": pos, "hard_negative": neg}
        if self.lang_checker is not None:
            wrong = self._wrong_language_fields(p, fields)
            if wrong:
                for name in wrong:
                    self.rejects_by_field[LANGUAGE_MISMATCH][name] += 1
                self._reject(p.task_type, LANGUAGE_MISMATCH)
                return None
        if self.contamination is not None:
            hit = self.contamination.match(fields)
            if hit is not None:
                self.rejects_by_field[CONTAMINATED][hit.field] += 1
                self.contamination_reasons[hit.reason] += 1
                self._reject(p.task_type, CONTAMINATED)
                return None
        return ExampleRow(
            task_type=p.task_type.value, instruction=p.instruction, query=query, positive=pos,
            hard_negative=neg, language=p.language, target_language=p.target_language,
            generator_model=self.model, template_id=p.template.id, template_version=p.template.version,
            request_id=p.request.key, placeholders=p.placeholders,
        )

    async def run(self) -> JobResult:
        pools, bstats = await self.brainstorm()
        plans, _ = self.plan(pools)
        self.progress.add_total(len({p.request.key for p in plans}))
        by_key: dict[str, list[Planned]] = defaultdict(list)
        for p in plans:
            by_key[p.request.key].append(p)
        candidates: dict[tuple[str, int], ExampleRow] = {}
        async for out in self.runner.run([p.request for p in plans]):
            if self._lang_loading is not None:
                self.lang_checker = await asyncio.wrap_future(self._lang_loading)
                self._lang_loading = None
            for p in by_key[out.request.key]:
                row = self._judge(p, out)
                if row is not None:
                    candidates[(p.task_type.value, p.index)] = row
        order = {tt.value: n for n, tt in enumerate(TaskType)}
        deduper = Deduper() if self.cfg.filters.dedup else None
        rows = []
        for (tt, _), row in sorted(candidates.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
            if deduper is not None and deduper.is_duplicate(row.query, row.positive):
                self._reject(tt, DUPLICATE)
                continue
            rows.append(row)
        r = self.runner
        r.counts.failed_by_reason = dict(r.failed_by_reason)
        r.counts.retries_used = getattr(getattr(self.backend, "budget", None), "used", 0)
        return JobResult(
            rows=rows, requests=r.counts, rejects=self.rejects, rejects_by_type=self.rejects_by_type,
            brainstorm=bstats, language_id=self.lang_stats, tokens=r.tokens, tokens_this_run=r.tokens_new,
            cost_usd=r.cost, cost_usd_this_run=r.cost_new, unpriced_models=r.unpriced, templates=self.planner.templates,
            contamination_strings=len(self.contamination) if self.contamination is not None else 0,
            rejects_by_field=dict(self.rejects_by_field), contamination_reasons=self.contamination_reasons,
        )


def _in_thread(fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    """Start fn(*args) in a daemon thread; the future carries its result or its exception."""
    fut: concurrent.futures.Future[T] = concurrent.futures.Future()

    def target() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised where the result is awaited
            fut.set_exception(exc)

    threading.Thread(target=target, name=f"load-{getattr(fn, '__name__', 'x')}", daemon=True).start()
    return fut

