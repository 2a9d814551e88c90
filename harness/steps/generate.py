"""The generate kind: a generation config run by ``generators`` into the step's directory.

Key: the config's content identity (:func:`generators.identity.generation_identity`): what
determines the examples and nothing else. Transport settings (concurrency, timeouts, attempts,
retry budget, backoff, batch polling), prices and failure thresholds are not in it, so lowering
``concurrency`` after a 429 storm is the same step; contamination sources and a local model enter
by their bytes, an OpenAI model named by ``model_env`` by the model it names.

Cache: every LLM call is looked up in (and stored into) the run-level response cache, keyed by the
exact request, which every generate step of the run folder shares. So a killed step, an edited
filter (a new step key) or a second config asking for overlapping requests pays only for calls
never answered before. The spec handed to ``run`` is the validated config object the key was
computed from; the file is never read again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError
from harness.steps.base import GENERATE, CacheUse, Estimate, Step
from harness.steps.kind import OneStepNames, StepRunner
from harness.steps.context import RunContext

if TYPE_CHECKING:  # for the annotation only: like every kind, this module imports its library where it runs it
    from generators.config import GenerationConfig

OUTPUT = "output"  # the generator's output folder inside the step directory (examples.jsonl, manifest.json)


@dataclass
class GenerateSpec:
    name: str  # the matrix entry
    config: GenerationConfig  # validated at plan time: what the key was computed from and what runs
    source: Path  # the config file, for messages and provenance only


class GenerateKind(OneStepNames):
    name = GENERATE
    code_version = "2"  # 2: keyed by content identity; responses in the run-level cache
    resumes = True
    exclusive = False  # it waits on an LLM server: several may run at once

    def plan(self, name: str, config_path: Path, matrix_path: Path, field: str) -> Step[GenerateSpec]:
        """Validate the generation config now (bad input fails before anything runs) and key it."""
        from generators.config import load_config
        from generators.errors import GeneratorInputError
        from generators.identity import generation_identity

        if not config_path.is_file():
            raise InputError(matrix_path, field, f"generation config {config_path} does not exist",
                             "fix the path (relative to the matrix file)")
        try:
            cfg = load_config(config_path)
            identity = generation_identity(cfg, config_path)
        except GeneratorInputError as exc:
            raise InputError(matrix_path, field, f"invalid generation config ({exc})", "fix the generation config") from None
        return Step(kind=GENERATE, label=f"generate {name}", params={"generation": identity}, inputs=[],
                    code_version=self.code_version, spec=GenerateSpec(name=name, config=cfg, source=config_path))

    @contextmanager
    def session(self, steps: list[Step], ctx: RunContext) -> Iterator[StepRunner]:
        def run(step: Step, work: Path) -> dict[str, Any]:
            from generators.commands import generate

            spec: GenerateSpec = step.spec
            start = time.monotonic()
            manifest = generate(spec.config, work / OUTPUT, responses=responses_of(spec, ctx), progress=ctx.show_progress,
                                source=spec.source)
            return {"kept": manifest.kept, "counts": manifest.counts, "rejects": manifest.rejects,
                    "cost_usd": manifest.cost_usd, "cost_usd_this_run": manifest.cost_usd_this_run,
                    "new_calls": manifest.requests.new_calls, "cached_calls": manifest.requests.from_store,
                    "examples": f"{OUTPUT}/{manifest.examples_file}", "seconds": round(time.monotonic() - start, 3)}

        yield run

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None:
        return None

    def environment(self, step: Step) -> set[str]:
        """The variables its backend names (``base_url_env``, ``api_key_env``)."""
        from generators.config import environment_variables

        return set(environment_variables(step.spec.config))

    def describe_summary(self, summary: dict[str, Any]) -> str:
        return f"kept {summary.get('kept')} examples"

    def estimate(self, step: Step, ctx: RunContext) -> Estimate:
        from generators.estimate import estimate_generation

        spec: GenerateSpec = step.spec
        est = estimate_generation(spec.config, responses_of(spec, ctx), spec.source)
        return Estimate(summary=est.summary, llm_calls=est.calls_to_pay, llm_calls_cached=est.calls_cached,
                        local_llm=est.local, local_llm_hours=est.local_llm_hours, usd=est.usd,
                        unpriced_models=list(est.unpriced_models), gpu_hours=0.0, assumptions=est.assumptions,
                        details=est.model_dump(exclude={"summary", "assumptions", "usd", "unpriced_models", "local_llm_hours"}))

    def progress(self, step: Step, work: Path) -> str | None:
        return None  # a killed try leaves its answers in the run-level cache, which the estimate counts

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]:
        return [CacheUse("llm-responses", responses_of(step.spec, ctx), "read-write")]


KIND = GenerateKind()


def responses_of(spec: GenerateSpec, ctx: RunContext) -> Path:
    """The response cache a generate step uses: the config's own ``store:`` when it names one (the
    user asked for that folder), else the run's (``llm_cache:`` / ``HARNESS_LLM_CACHE`` / ``<run>/cache/llm``)."""
    return spec.config.store if spec.config.store is not None else ctx.caches.llm


def examples_path(step_dir: Path) -> Path:
    """Where a finished generate step's examples are (what a ``generated`` mixture source reads)."""
    return step_dir / OUTPUT


def generated_example_count(step: Step[GenerateSpec]) -> int:
    """How many examples a generate step asks for (before rejects): what a train estimate counts."""
    spec: GenerateSpec = step.spec
    return sum(t.count for t in spec.config.tasks.values())
