"""What a generation job will cost before it runs: calls, how many the response cache already
answers, tokens and dollars of the rest, and local time (shown by ``harness plan``).

Calls are the ones ``generators.pipeline.Job`` issues: for each two-step task type with a count,
``brainstorm_calls`` brainstorm calls, then one call per example (every request has its own seed, so
none collapse into another). Which of them the cache answers is counted exactly where it can be:
the brainstorm requests depend on the config alone, so they are built (by the job's own
``generators.planning.RequestPlanner``) and looked up; when every brainstorm answer of a task type is
cached, that type's task pool is rebuilt from them exactly as the job would, its example requests
are built and looked up too. Otherwise (and for every example of a type whose brainstorm is not all
cached) examples count as calls to pay, and the assumptions say so. One-step types (STS, bitext)
need no pool and are always exact.

Input tokens are the rendered prompt templates (expected length over the placeholder values, a
brainstormed task taken as ``lengths.task`` or 100 characters) at 4 characters a token plus the
chat framing; output tokens are ``max_tokens`` per call, a ceiling, so the dollars are an upper
bound. Prices: the config's ``prices:`` over the generators' table, the batch discount applied in
batch mode; a model with no price is reported as unpriced, never as $0. Local models cost $0 and
take time (SmolLM2-135M's CPU rate from ../shared/NOTES.md, scaled by parameter count).
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from generators.config import GenerationConfig, OpenAIBackendConfig
from generators.model_size import local_model_params
from generators.planning import RequestPlanner, brainstorm_schema, field_lengths, schema_text
from generators.pricing import price_table
from generators.response_cache import ResponseCache
from generators.schemas import json_schema
from generators.taxonomy import TaskType, spec
from generators.templates import Template, load_template

CHARS_PER_TOKEN = 4.0
CHAT_TOKENS_PER_MESSAGE = 4  # role and separators of the chat format
CHAT_TOKENS_PER_REPLY = 3  # the assistant turn's priming
TASK_CHARS = 100  # a brainstormed task: one sentence
LOCAL_GEN_TOKENS_PER_S = 83.0  # ../shared/NOTES.md: SmolLM2-135M fp32 CPU, aggregate output at batch 8
LOCAL_GEN_PARAMS = 134.5e6


class GenerationEstimate(BaseModel):
    """The estimate of one generation job; token and dollar figures are for the calls to pay."""

    calls: int
    brainstorm_calls: int
    example_calls: int
    calls_cached: int
    calls_to_pay: int
    calls_by_type: dict[str, dict[str, int]] = Field(default_factory=dict)
    input_tokens: int
    output_tokens_max: int
    model: str
    local: bool
    usd: float | None  # upper bound (output at max_tokens); None when the model has no price
    unpriced_models: list[str] = Field(default_factory=list)
    local_llm_hours: float | None = None
    summary: str
    assumptions: str


def generation_calls(cfg: GenerationConfig) -> dict[str, dict[str, int]]:
    """Per task type: the brainstorm and example calls ``generators.pipeline.Job`` issues for ``cfg``.

    Brainstorm calls are made for two-step types with a count > 0; every example is one call (an
    example of a two-step type whose brainstorm yielded no task is skipped, so this is a ceiling).
    """
    out = {}
    for tt, tcfg in cfg.tasks.items():
        two_step = spec(tt).two_step
        out[tt.value] = {"brainstorm": tcfg.brainstorm_calls if two_step and tcfg.count > 0 else 0, "examples": tcfg.count}
    return out


def _language_name_chars(cfg: GenerationConfig) -> float:
    from generators.sampling import LANGUAGE_NAMES, xlmr_weights

    weights = xlmr_weights() if cfg.languages == "xlmr" else dict(cfg.languages)  # type: ignore[arg-type]
    total = sum(w for w in weights.values() if w > 0)
    return sum(w * len(LANGUAGE_NAMES[c]) for c, w in weights.items() if w > 0) / total


def expected_prompt_chars(template: Template, runtime: dict[str, float]) -> float:
    """Expected characters of a rendered template: fixed text + the mean length of each placeholder's values."""
    chars = 0.0
    for text in (template.system, template.user):
        if not text:
            continue
        for literal, name, _, _ in string.Formatter().parse(text.strip()):
            chars += len(literal)
            if name is None:
                continue
            if name in template.placeholders:
                values = template.placeholders[name]
                chars += sum(len(v) for v in values) / len(values)
            else:
                chars += runtime[name]
    return chars


def prompt_tokens(template: Template, runtime: dict[str, float], schema_chars: int = 0) -> float:
    messages = 2 if template.system else 1
    return ((expected_prompt_chars(template, runtime) + schema_chars) / CHARS_PER_TOKEN
            + messages * CHAT_TOKENS_PER_MESSAGE + CHAT_TOKENS_PER_REPLY)


def per_call_tokens(cfg: GenerationConfig) -> dict[str, dict[str, tuple[float, float]]]:
    """Per task type and call kind ("brainstorm", "examples"): (expected input tokens, output ceiling) of one call."""
    language = _language_name_chars(cfg)
    schema_in_prompt = isinstance(cfg.backend, OpenAIBackendConfig) and cfg.backend.response_format == "json_schema"
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for tt, tcfg in cfg.tasks.items():
        tspec = spec(tt)
        runtime = {"task": float(cfg.lengths.task or TASK_CHARS), "language": language, "src_lang": language,
                   "tgt_lang": language, "num_tasks": float(len(str(tcfg.tasks_per_brainstorm)))}
        kinds: dict[str, tuple[float, float]] = {}
        if tspec.two_step:
            tpl = load_template(f"{cfg.templates}/{tspec.brainstorm_template}")
            schema = len(schema_text(brainstorm_schema(cfg, tt))) if schema_in_prompt else 0
            kinds["brainstorm"] = (prompt_tokens(tpl, runtime, schema),
                                   float(cfg.sampling.brainstorm_max_tokens or cfg.sampling.max_tokens))
        tpl = load_template(f"{cfg.templates}/{tspec.generate_template}")
        schema = len(schema_text(json_schema(tspec.schema, field_lengths(cfg, tspec)))) if schema_in_prompt else 0
        kinds["examples"] = (prompt_tokens(tpl, runtime, schema), float(cfg.sampling.max_tokens))
        out[tt.value] = kinds
    return out


def generation_tokens(cfg: GenerationConfig, calls: dict[str, dict[str, int]] | None = None) -> dict[str, float]:
    """Expected input tokens and the output ceiling over ``calls`` (default: every call of ``cfg``)."""
    calls = generation_calls(cfg) if calls is None else calls
    per_call = per_call_tokens(cfg)
    tokens_in = tokens_out = 0.0
    for tt, kinds in calls.items():
        for kind, n in kinds.items():
            if n and kind in per_call[tt]:
                tokens_in += n * per_call[tt][kind][0]
                tokens_out += n * per_call[tt][kind][1]
    return {"input": tokens_in, "output_max": tokens_out}


def cached_calls(cfg: GenerationConfig, cache: ResponseCache | None,
                 planner: RequestPlanner) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per task type: calls the job will make, and how many the cache answers (exact where it can be).

    Returns ``{type: {"brainstorm", "examples", "brainstorm_cached", "examples_cached"}}`` and notes on
    the types whose example count is a ceiling.
    """
    counts = {tt: {**n, "brainstorm_cached": 0, "examples_cached": 0} for tt, n in generation_calls(cfg).items()}
    if cache is None:
        return counts, []
    brainstorm = planner.brainstorm_requests()
    answers: dict[str, tuple[str, str | None]] = {}
    for tt, req in brainstorm:
        hit = cache.get(req.key)
        if hit is not None:
            answers[req.key] = (hit.response, hit.finish_reason)
            counts[tt.value]["brainstorm_cached"] += 1
    exact: set[TaskType] = set()
    notes = []
    for tt, tcfg in cfg.tasks.items():
        n = counts[tt.value]
        if not spec(tt).two_step or n["brainstorm_cached"] == n["brainstorm"]:
            exact.add(tt)
        elif tcfg.count:
            notes.append(f"{tt.value}: {n['brainstorm'] - n['brainstorm_cached']} of {n['brainstorm']} brainstorm "
                         f"answers not cached, so its {tcfg.count:,} examples count as to pay (their requests depend "
                         "on the task pool)")
    pools, _ = planner.pools([(tt, r) for tt, r in brainstorm if tt in exact], answers)
    plans, skipped = planner.examples(pools, types=exact)
    for tt in exact:
        counts[tt.value]["examples"] = 0
    seen: set[str] = set()
    for p in plans:
        if p.request.key in seen:
            continue
        seen.add(p.request.key)
        n = counts[p.task_type.value]
        n["examples"] += 1
        n["examples_cached"] += cache.get(p.request.key) is not None
    for tt, k in Counter(skipped).items():
        notes.append(f"{tt.value}: {k:,} examples skipped (its cached brainstorm answers left no task pool)")
    return counts, notes


def _money(cfg: GenerationConfig, model: str, tokens: dict[str, float]) -> tuple[float | None, str]:
    assert isinstance(cfg.backend, OpenAIBackendConfig)
    discount = cfg.backend.batch_discount if cfg.backend.mode == "batch" else 0.0
    price = price_table(cfg.prices).price(model)
    if price is None:
        return None, f"unpriced ({model} has no price: add it under prices:)"
    usd = (tokens["input"] * price.input_per_mtok + tokens["output_max"] * price.output_per_mtok) / 1e6 * (1 - discount)
    return round(usd, 2), f"≤ ${usd:,.2f} at ${price.input_per_mtok:g}/${price.output_per_mtok:g} per Mtok" + (
        f", batch −{discount:.0%}" if discount else "")


def _big(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def _hours(h: float) -> str:
    return f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.2g}" if h > 0 else "0"


def estimate_generation(cfg: GenerationConfig, responses: Path | None, source: Path | None = None) -> GenerationEstimate:
    """Estimate ``cfg``'s job against the response cache at ``responses`` (None or absent: nothing cached)."""
    planner = RequestPlanner(cfg, source)
    cache = ResponseCache(responses) if responses is not None and Path(responses).is_dir() else None
    counts, notes = cached_calls(cfg, cache, planner)
    brainstorm = sum(c["brainstorm"] for c in counts.values())
    examples = sum(c["examples"] for c in counts.values())
    cached = sum(c["brainstorm_cached"] + c["examples_cached"] for c in counts.values())
    to_pay = {tt: {"brainstorm": c["brainstorm"] - c["brainstorm_cached"], "examples": c["examples"] - c["examples_cached"]}
              for tt, c in counts.items()}
    tokens = generation_tokens(cfg, to_pay)
    model = planner.model
    local = not isinstance(cfg.backend, OpenAIBackendConfig)
    calls = brainstorm + examples
    calls_text = f"{calls:,} LLM calls ({brainstorm:,} brainstorm + {examples:,} examples)"
    if cache is not None:
        calls_text += f", {cached:,} cached, {calls - cached:,} to pay"
    tok_text = f"~{_big(tokens['input'])} tokens in, ≤{_big(tokens['output_max'])} out"
    assumptions = [f"prompt templates '{cfg.templates}' at {CHARS_PER_TOKEN:g} chars/token (a task "
                   f"{cfg.lengths.task or TASK_CHARS} chars); output at sampling.max_tokens ({cfg.sampling.max_tokens}) "
                   "per call: a ceiling; tokens and dollars are for the calls to pay",
                   "cached calls looked up by their exact requests in " + (str(responses) if cache else "no cache (none yet)"),
                   *notes]
    usd: float | None = 0.0
    hours: float | None = None
    unpriced: list[str] = []
    if not local:
        usd, money = _money(cfg, model, tokens)
        unpriced = [model] if usd is None else []
        assumptions.append("wall time depends on the endpoint's rate limits")
        summary = f"{calls_text} to {model}; {tok_text}; {money}"
    else:
        params = local_model_params(cfg.backend.model)
        if params is None:
            summary = f"{calls_text} to {model}; {tok_text}; $0 (local), time unknown (model size unreadable)"
        else:
            hours = tokens["output_max"] / (LOCAL_GEN_TOKENS_PER_S * LOCAL_GEN_PARAMS / params[0]) / 3600
            summary = f"{calls_text} to {model}; {tok_text}; $0 (local), ≤{_hours(hours)} h"
        assumptions.append(f"local time at {LOCAL_GEN_TOKENS_PER_S:g} output tokens/s for SmolLM2-135M on CPU "
                           "(../shared/NOTES.md) scaled by parameter count; prompt reading not counted")
    by_type = {tt: {"brainstorm": c["brainstorm"], "examples": c["examples"],
                    "cached": c["brainstorm_cached"] + c["examples_cached"]} for tt, c in counts.items()}
    return GenerationEstimate(
        calls=calls, brainstorm_calls=brainstorm, example_calls=examples, calls_cached=cached,
        calls_to_pay=calls - cached, calls_by_type=by_type, input_tokens=round(tokens["input"]),
        output_tokens_max=round(tokens["output_max"]), model=model, local=local, usd=usd,
        unpriced_models=unpriced, local_llm_hours=hours, summary=summary, assumptions="; ".join(assumptions),
    )
