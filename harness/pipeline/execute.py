"""Running steps against the store: the contract every executor (local, concurrent, Ray) shares.

An executor only decides *where and when* a unit runs; what running means is here, and it knows
the kinds only through their protocol (:class:`harness.steps.kind.StepKind`): claim the step, skip
it if it is done (by this run, an earlier one, or a concurrent one), hold a shared claim on every
input it reads (so ``harness gc`` cannot delete an input under it), run the kind's step in the work
directory, commit (manifest + rename), and let the kind finish (evaluation publishes its result
files). A *unit* is the steps one kind session runs together: one generate step, one train step,
or the evaluate steps of one loaded model (so a model is loaded once, where its cells run).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from atomicio import atomic_write_text
from harness.pipeline.planner import Plan
from harness.steps import kind_of
from harness.steps.base import Step, canonical_hash
from harness.steps.kind import StepRunner
from harness.steps.context import RunContext

logger = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    kind: str
    label: str
    key: str
    status: str  # "done" | "cached" | "failed" | "skipped"
    title: str  # what the report calls the step (its kind's ``title``: "minilm × SciFact", "train tuned")
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Unit:
    """What one worker runs: the steps of one kind session (one step, or one model's evaluate cells)."""

    kind: str
    steps: list[Step]

    @property
    def uid(self) -> str:
        """Names the unit by the keys of its steps, so a worker that planned differently cannot run it."""
        return f"{self.kind}:{canonical_hash(sorted(s.key for s in self.steps))[:16]}"

    @property
    def inputs(self) -> list[Step]:
        own = {s.key for s in self.steps}
        return list({i.key: i for s in self.steps for i in s.inputs if i.key not in own}.values())

    @property
    def gpu(self) -> bool:
        return any(s.gpu for s in self.steps)

    @property
    def label(self) -> str:
        return kind_of(self.kind).unit_label(self.steps)


def units(plan: Plan) -> list[Unit]:
    """The plan's steps grouped into units, in an order where every unit follows its inputs."""
    out: list[Unit] = []
    groups: dict[tuple[str, str], Unit] = {}
    for s in plan.steps:
        if s.group is None:
            out.append(Unit(s.kind, [s]))
            continue
        if (s.kind, s.group) not in groups:
            groups[(s.kind, s.group)] = Unit(s.kind, [])
            out.append(groups[(s.kind, s.group)])
        groups[(s.kind, s.group)].steps.append(s)
    return out


class InputGone(RuntimeError):
    """A finished input step vanished before this step could read it (``harness gc --delete`` in between)."""


def _outcome(step: Step, status: str, **kw: Any) -> StepOutcome:
    return StepOutcome(step.kind, step.label, step.key, status, kind_of(step.kind).title(step), **kw)


def run_step(step: Step, ctx: RunContext, run: StepRunner) -> StepOutcome:
    """Claim, skip if done, run ``run(step, work_dir)`` with its inputs claimed for reading, commit.

    Exceptions propagate to the caller.
    """
    kind = kind_of(step.kind)
    store = ctx.store
    done = store.manifest(step.kind, step.key)
    if done is None:
        with store.claim(step.kind, step.key, on_wait=lambda: logger.warning("%s: another run holds it; waiting", step.label)):
            done = store.manifest(step.kind, step.key)
            if done is None:
                with store.reading([(i.kind, i.key) for i in step.inputs]):
                    gone = [i.label for i in step.inputs if not store.is_done(i.kind, i.key)]
                    if gone:
                        raise InputGone(f"input {', '.join(gone)} is no longer in the run folder (removed by gc?); "
                                        "run again to rebuild it")
                    start = time.monotonic()
                    if kind.resumes:
                        work = store.work_dir(step.kind, step.key)
                        work.mkdir(parents=True, exist_ok=True)
                    else:
                        work = store.fresh_work_dir(step.kind, step.key)
                    summary = run(step, work)
                    seconds = time.monotonic() - start
                    store.commit(step.kind, step.key, label=step.label, code_version=step.code_version, params=step.params,
                                 inputs=step.input_keys, summary=summary, seconds=seconds)
                kind.after_commit(step, store.step_dir(step.kind, step.key), ctx)
                return _outcome(step, "done", summary=summary, seconds=round(seconds, 3))
    kind.after_commit(step, store.step_dir(step.kind, step.key), ctx)
    return _outcome(step, "cached", summary=done.summary)


def fail(step: Step, ctx: RunContext, exc: BaseException) -> StepOutcome:
    tb = "".join(traceback.format_exception(exc))
    log = ctx.output / "logs" / f"{kind_of(step.kind).log_name(step)}.log".replace("/", "__")
    atomic_write_text(log, tb)
    logger.error("%s failed: %s (traceback in %s)", step.label, exc, log)
    return _outcome(step, "failed", error=f"{type(exc).__name__}: {exc}")


def skipped(step: Step, reason: str) -> StepOutcome:
    return _outcome(step, "skipped", error=reason)


def execute_unit(unit: Unit, ctx: RunContext) -> tuple[list[StepOutcome], dict[str, Any]]:
    """Run one unit in this process; returns its outcomes and its session's statistics (evaluation:
    texts encoded, embedding-cache hits). A step that fails does not stop the unit's other steps: a
    model that cannot load fails each of its cells alike."""
    kind = kind_of(unit.kind)
    outcomes: list[StepOutcome] = []
    stats: dict[str, Any] = {}
    try:
        with kind.session(unit.steps, ctx) as run:
            for step in unit.steps:
                try:
                    outcomes.append(run_step(step, ctx, run))
                except Exception as exc:
                    outcomes.append(fail(step, ctx, exc))
            stats = getattr(run, "stats", dict)()
    except Exception as exc:  # the session itself could not open (e.g. the embedding cache)
        outcomes.extend(fail(s, ctx, exc) for s in unit.steps if s.key not in {o.key for o in outcomes})
    return outcomes, stats

