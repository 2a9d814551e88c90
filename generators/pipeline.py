"""The job: brainstorm task pools, build one request per example, run them store-first, filter, keep.

Requests are rebuilt identically on every run (seeded per example), each is answered from the
response store when it can be and sent to the backend only when it cannot; every fresh completion is
stored the moment it arrives. Outcomes are judged as they come (parse, language, contamination) and
deduplicated at the end in example order, so the kept set does not depend on completion order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from generators.backends.base import Backend, CallOutcome, ChatRequest
from generators.config import GenerationConfig
from generators.filters import CONTAMINATED, DUPLICATE, LANGUAGE_MISMATCH, ContaminationFilter, Deduper, LanguageChecker, normalize
from generators.output import ExampleRow, RequestCounts, TokenCounts
from generators.parsing import parse_output
from generators.pricing import PriceTable
from generators.progress import Progress
from generators.response_store import ResponseStore
from generators.sampling import LANGUAGE_NAMES, LanguageSampler, choose, derived_rng, derived_seed, sample_placeholders, xlmr_weights
from generators.schemas import BrainstormOutput, json_schema
from generators.taxonomy import TaskSpec, TaskType, spec
from generators.templates import Template, load_template

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_FAILED = "call_failed"
NO_TASK_POOL = "no_task_pool"

# Instructions for the one-step types, as the paper's evaluation phrases them.
ONE_STEP_INSTRUCTIONS = {
    TaskType.STS: "Retrieve semantically similar text.",
    TaskType.BITEXT: "Retrieve parallel sentences.",
}


@dataclass
class Planned:
    """One example to be generated: where it came from and the request that will produce it."""

    task_type: TaskType
    index: int
    language: str
    target_language: str | None
    instruction: str
    template: Template
    placeholders: dict[str, str]
    request: ChatRequest


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
    """Store-first dispatch: answers from the store, sends the rest, stores each success at once."""

    def __init__(self, backend: Backend, store: ResponseStore, prices: PriceTable, progress: Progress,
                 batch_discount: float = 0.0) -> None:
        self.backend = backend
        self.store = store
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

    def _account(self, prompt: int, completion: int, cost: float | None, new: bool) -> None:
        for t in (self.tokens, self.tokens_new) if new else (self.tokens,):
            t.prompt += prompt
            t.completion += completion
            t.total += prompt + completion
        if cost is not None:
            self.cost += cost
            if new:
                self.cost_new += cost

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[CallOutcome]:
        unique: dict[str, ChatRequest] = {}
        for r in requests:
            unique.setdefault(r.key, r)
        to_send = []
        for key, req in unique.items():
            self.counts.total += 1
            hit = self.store.get(key)
            if hit is None:
                to_send.append(req)
                continue
            self.counts.succeeded += 1
            self.counts.from_store += 1
            if hit.cost_usd is None:
                self.unpriced.add(hit.model)
            self._account(hit.prompt_tokens, hit.completion_tokens, hit.cost_usd, new=False)
            self.progress.update(done=1, tokens=hit.prompt_tokens + hit.completion_tokens, cost=hit.cost_usd or 0.0)
            yield CallOutcome(req, ok=True, text=hit.response, finish_reason=hit.finish_reason,
                              prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cached=True)
        if not to_send:
            return
        async for out in self.backend.stream(to_send):
            if out.ok:
                discount = self.batch_discount if out.batch else 0.0
                cost = self.prices.cost(out.request.model, out.prompt_tokens, out.completion_tokens, discount)
                if cost is None:
                    self.unpriced.add(out.request.model)
                self.store.put(out, cost)
                self.counts.succeeded += 1
                self.counts.new_calls += 1
                self._account(out.prompt_tokens, out.completion_tokens, cost, new=True)
                self.progress.update(done=1, tokens=out.prompt_tokens + out.completion_tokens, cost=cost or 0.0)
            else:
                self.counts.failed += 1
                self.failed_by_reason[(out.error or "unknown").split("; retry budget")[0][:300]] += 1
                self.progress.update(done=1)
            yield out


def _lengths(cfg: GenerationConfig, tspec: TaskSpec) -> dict[str, int]:
    caps = {"short": cfg.lengths.short, "long": cfg.lengths.long}
    return {f: caps[c] for f, c in tspec.field_lengths.items() if caps[c] is not None}  # type: ignore[misc]


def _schema_text(schema: dict[str, object]) -> str:
    return json.dumps(schema, separators=(",", ":"))  # key order kept: it is the order the model writes


class Job:
    """One generation job over a config, a backend and a store."""

    def __init__(self, cfg: GenerationConfig, backend: Backend, store: ResponseStore, progress: Progress,
                 contamination: ContaminationFilter | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.model = backend.model_name  # type: ignore[attr-defined]
        prices = PriceTable({m: p for m, p in _price_overrides(cfg).items()})
        discount = float(getattr(cfg.backend, "batch_discount", 0.0))
        self.runner = CallRunner(backend, store, prices, progress, batch_discount=discount)
        self.progress = progress
        weights = xlmr_weights() if cfg.languages == "xlmr" else dict(cfg.languages)  # type: ignore[arg-type]
        self.languages = LanguageSampler(weights)
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
        self.templates: dict[str, int] = {}
        options = getattr(backend, "request_options", None)
        self.request_options: tuple[tuple[str, Any], ...] = tuple(sorted((options() if options else {}).items()))

    def _request(self, messages: list[dict[str, str]], max_tokens: int, seed: int, schema: dict[str, object] | None, tag: str) -> ChatRequest:
        s = self.cfg.sampling
        return ChatRequest(
            model=self.model,
            messages=tuple((m["role"], m["content"]) for m in messages),
            temperature=s.temperature, top_p=s.top_p, max_tokens=max_tokens, seed=seed,
            response_schema=_schema_text(schema) if schema is not None else None,
            options=self.request_options, tag=tag,
        )

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
        cfg = self.cfg
        planned: list[tuple[TaskType, ChatRequest]] = []
        for tt, tcfg in cfg.tasks.items():
            tspec = spec(tt)
            if not tspec.two_step or tcfg.count == 0:
                continue
            tpl = load_template(f"{cfg.templates}/{tspec.brainstorm_template}")
            self.templates[tpl.id] = tpl.version
            caps = {"tasks": cfg.lengths.task} if cfg.lengths.task else {}
            schema = json_schema(BrainstormOutput, caps, max_items=tcfg.tasks_per_brainstorm, min_chars=16)  # a task is a sentence
            for i in range(tcfg.brainstorm_calls):
                msgs = tpl.render({"num_tasks": str(tcfg.tasks_per_brainstorm)})
                req = self._request(msgs, cfg.sampling.brainstorm_max_tokens or cfg.sampling.max_tokens,
                                    derived_seed(cfg.seed, "brainstorm", tt.value, i), schema, f"brainstorm:{tt.value}:{i}")
                planned.append((tt, req))
        self.progress.add_total(len(planned))
        raw: dict[str, CallOutcome] = {}
        async for out in self.runner.run([r for _, r in planned]):
            raw[out.request.key] = out
        pools: dict[TaskType, list[str]] = {}
        stats: Counter[str] = Counter()
        for tt, req in planned:  # in plan order, so the pool order is stable
            out = raw.get(req.key)
            stats["calls"] += 1
            if out is None or not out.ok:
                stats["failed"] += 1
                continue
            parsed = parse_output(out.text, BrainstormOutput, out.finish_reason)
            if parsed.value is None:
                stats[f"rejected_{parsed.reason}"] += 1
                continue
            pool = pools.setdefault(tt, [])
            seen = {normalize(t) for t in pool}
            for task in parsed.value.tasks:  # type: ignore[attr-defined]
                if normalize(task) not in seen:
                    seen.add(normalize(task))
                    pool.append(task)
        for tt, pool in pools.items():
            stats[f"tasks_{tt.value}"] = len(pool)
        return pools, dict(stats)

    # -- step two -------------------------------------------------------------------------------
    def plan(self, pools: dict[TaskType, list[str]]) -> tuple[list[Planned], int]:
        cfg = self.cfg
        plans: list[Planned] = []
        skipped = 0
        for tt, tcfg in cfg.tasks.items():
            tspec = spec(tt)
            tpl = load_template(f"{cfg.templates}/{tspec.generate_template}")
            self.templates[tpl.id] = tpl.version
            schema = json_schema(tspec.schema, _lengths(cfg, tspec))
            for i in range(tcfg.count):
                rng = derived_rng(cfg.seed, tt.value, i)
                lang = self.languages.draw(rng)
                target = None
                values = sample_placeholders(tpl, rng)
                if tspec.bilingual:
                    target = "en" if lang != "en" else self.languages.draw_other(rng, "en")
                    values.update(src_lang=LANGUAGE_NAMES[lang], tgt_lang=LANGUAGE_NAMES[target])
                else:
                    values["language"] = LANGUAGE_NAMES[lang]
                if tspec.two_step:
                    pool = pools.get(tt)
                    if not pool:
                        skipped += 1
                        self._reject(tt, NO_TASK_POOL)
                        continue
                    instruction = choose(rng, pool)
                    values["task"] = instruction
                else:
                    instruction = ONE_STEP_INSTRUCTIONS[tt]
                placeholders = {k: v for k, v in values.items() if k in tpl.placeholders}
                req = self._request(tpl.render(values), cfg.sampling.max_tokens,
                                    derived_seed(cfg.seed, "generate", tt.value, i), schema, f"{tt.value}:{i}")
                plans.append(Planned(tt, i, lang, target, instruction, tpl, placeholders, req))
        return plans, skipped

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
            cost_usd=r.cost, cost_usd_this_run=r.cost_new, unpriced_models=r.unpriced, templates=self.templates,
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


def _price_overrides(cfg: GenerationConfig) -> dict[str, object]:
    from generators.pricing import Price

    return {m: Price(p.input_per_mtok, p.output_per_mtok) for m, p in cfg.prices.items()}
