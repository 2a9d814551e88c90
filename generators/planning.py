"""The requests a job makes, built from the config alone: the one copy of that logic.

Step one's brainstorm requests depend only on the config; step two's example requests depend on the
config and on the task pools the brainstorm answers make. Every draw comes from an RNG seeded per
request, so the same config (and the same answers) rebuild byte-identical requests on every run:
that is what lets the response cache answer them. The job (`generators.pipeline.Job`) sends them;
the estimate (`generators.estimate`) builds them without sending anything, to look them up.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generators.backends.base import ChatRequest
from generators.config import GenerationConfig
from generators.filters import normalize
from generators.identity import generator_model, request_options
from generators.parsing import parse_output
from generators.sampling import LANGUAGE_NAMES, LanguageSampler, choose, derived_rng, derived_seed, sample_placeholders, xlmr_weights
from generators.schemas import BrainstormOutput, json_schema
from generators.taxonomy import TaskSpec, TaskType, spec
from generators.templates import Template, load_template

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


def field_lengths(cfg: GenerationConfig, tspec: TaskSpec) -> dict[str, int]:
    """maxLength caps per output field for constrained decoding, from the short/long settings."""
    caps = {"short": cfg.lengths.short, "long": cfg.lengths.long}
    return {f: caps[c] for f, c in tspec.field_lengths.items() if caps[c] is not None}  # type: ignore[misc]


def schema_text(schema: dict[str, object]) -> str:
    return json.dumps(schema, separators=(",", ":"))  # key order kept: it is the order the model writes


def brainstorm_schema(cfg: GenerationConfig, tt: TaskType) -> dict[str, object]:
    caps = {"tasks": cfg.lengths.task} if cfg.lengths.task else {}
    return json_schema(BrainstormOutput, caps, max_items=cfg.tasks[tt].tasks_per_brainstorm, min_chars=16)  # a task is a sentence


class RequestPlanner:
    """Builds a config's requests; `model` and options come from `generators.identity`."""

    def __init__(self, cfg: GenerationConfig, source: Path | None = None) -> None:
        self.cfg = cfg
        self.model = generator_model(cfg, source)
        self.options: tuple[tuple[str, Any], ...] = tuple(sorted(request_options(cfg.backend).items()))
        weights = xlmr_weights() if cfg.languages == "xlmr" else dict(cfg.languages)  # type: ignore[arg-type]
        self.languages = LanguageSampler(weights)
        self.templates: dict[str, int] = {}  # template id -> version, of every template rendered

    def _template(self, name: str) -> Template:
        tpl = load_template(f"{self.cfg.templates}/{name}")
        self.templates[tpl.id] = tpl.version
        return tpl

    def _request(self, messages: list[dict[str, str]], max_tokens: int, seed: int, schema: dict[str, object] | None,
                 tag: str) -> ChatRequest:
        s = self.cfg.sampling
        return ChatRequest(
            model=self.model,
            messages=tuple((m["role"], m["content"]) for m in messages),
            temperature=s.temperature, top_p=s.top_p, max_tokens=max_tokens, seed=seed,
            response_schema=schema_text(schema) if schema is not None else None,
            options=self.options, tag=tag,
        )

    def brainstorm_requests(self) -> list[tuple[TaskType, ChatRequest]]:
        """Step one: `brainstorm_calls` requests per two-step task type that has examples to make."""
        cfg = self.cfg
        planned: list[tuple[TaskType, ChatRequest]] = []
        for tt, tcfg in cfg.tasks.items():
            tspec = spec(tt)
            if not tspec.two_step or tcfg.count == 0:
                continue
            tpl = self._template(str(tspec.brainstorm_template))
            schema = brainstorm_schema(cfg, tt)
            for i in range(tcfg.brainstorm_calls):
                msgs = tpl.render({"num_tasks": str(tcfg.tasks_per_brainstorm)})
                planned.append((tt, self._request(msgs, cfg.sampling.brainstorm_max_tokens or cfg.sampling.max_tokens,
                                                  derived_seed(cfg.seed, "brainstorm", tt.value, i), schema,
                                                  f"brainstorm:{tt.value}:{i}")))
        return planned

    @staticmethod
    def pools(planned: Sequence[tuple[TaskType, ChatRequest]],
              answers: Mapping[str, tuple[str, str | None]]) -> tuple[dict[TaskType, list[str]], Counter[str]]:
        """Task pools from the brainstorm answers (key -> (text, finish reason); a missing key failed),
        in plan order so a pool's order is stable."""
        pools: dict[TaskType, list[str]] = {}
        stats: Counter[str] = Counter()
        for tt, req in planned:
            stats["calls"] += 1
            answer = answers.get(req.key)
            if answer is None:
                stats["failed"] += 1
                continue
            parsed = parse_output(answer[0], BrainstormOutput, answer[1])
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
        return pools, stats

    def examples(self, pools: Mapping[TaskType, list[str]],
                 types: set[TaskType] | None = None) -> tuple[list[Planned], list[TaskType]]:
        """Step two: one request per example (of `types`, default all); also the task type of every
        example skipped because its type's brainstorm left no task pool."""
        cfg = self.cfg
        plans: list[Planned] = []
        skipped: list[TaskType] = []
        for tt, tcfg in cfg.tasks.items():
            if types is not None and tt not in types:
                continue
            tspec = spec(tt)
            tpl = self._template(tspec.generate_template)
            schema = json_schema(tspec.schema, field_lengths(cfg, tspec))
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
                        skipped.append(tt)
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
