"""The local executor: the plan's units in dependency order, one at a time or ``jobs`` at once.

Sequential is the default because on one machine the model is the bottleneck. With ``jobs > 1``
independent units run in threads (generation waits on an LLM server, evaluation of small models on
separate cores); the units of an ``exclusive`` kind still run one at a time (training: a training
process owns the machine's accelerator and seeds torch's global RNG). A failed step does not stop
other branches; its dependents are reported as skipped, with the reason.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from atomicio import atomic_write_json, remove_stale_temporaries
from harness.pipeline.execute import StepOutcome, Unit, execute_unit, skipped, units
from harness.pipeline.planner import Plan
from harness.provenance import environment
from harness.steps import kind_of
from harness.steps.caches import CACHE
from harness.steps.context import RunContext


@dataclass
class RunReport:
    output: Path
    outcomes: list[StepOutcome] = field(default_factory=list)
    encode_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor: str = "local"
    _unfinished: dict[str, str] = field(default_factory=dict, repr=False)  # step key -> why it has no result

    def blocked_by(self, unit: Unit) -> str | None:
        """Why ``unit`` cannot run (an input failed or was skipped), or None."""
        for i in unit.inputs:
            if i.key in self._unfinished:
                return f"input {i.label} {self._unfinished[i.key]}"
        return None

    def settled(self, key: str) -> bool:
        return key in self._unfinished

    @property
    def failed(self) -> list[StepOutcome]:
        return [o for o in self.outcomes if o.status in ("failed", "skipped")]

    def count(self, kind: str, status: str) -> int:
        return sum(o.kind == kind and o.status == status for o in self.outcomes)

    def add(self, outcomes: list[StepOutcome], stats: dict[str, Any]) -> None:
        self.outcomes.extend(outcomes)
        for o in outcomes:
            if o.status in ("failed", "skipped"):
                self._unfinished[o.key] = "failed" if o.status == "failed" else "was skipped"
        for name, st in (stats.get("encode") or {}).items():
            self.encode_stats[name] = st
        cache = stats.get("cache")
        if cache:
            total = self.encode_stats.setdefault("_cache", {"hits": 0, "misses": 0, "damaged": 0})
            for k, v in cache.items():
                total[k] = total.get(k, 0) + v

    def to_json(self) -> dict[str, Any]:
        return {"output": str(self.output), "executor": self.executor,
                "steps": [o.__dict__ for o in self.outcomes], "encode_stats": self.encode_stats}


def make_context(plan: Plan, *, show_progress: bool, device: str | None, devices: tuple[str, ...] = ()) -> RunContext:
    """The run folder made and cleaned of dead writers' temporaries, and the context its units run in."""
    plan.output.mkdir(parents=True, exist_ok=True)
    # Not the run-level caches: the LLM response cache alone may hold ~500k entries, and each cache
    # cleans its own leftovers (the response cache its staging folder, the trainer its dense copies).
    remove_stale_temporaries(plan.output, skip=[plan.output / CACHE])
    return plan.context(device=device, devices=devices, show_progress=show_progress, environment=environment())


def run_plan(plan: Plan, *, show_progress: bool = True, device: str | None = None, devices: tuple[str, ...] = (),
             jobs: int = 1) -> RunReport:
    """Run every unit of ``plan`` here; ``devices`` (two or more) spreads each evaluate unit's encoding
    over one worker process per device (:mod:`harness.evaluation.device_pool`)."""
    ctx = make_context(plan, show_progress=show_progress, device=device, devices=devices)
    report = RunReport(output=plan.output)
    todo = units(plan)
    bar = tqdm(total=len(plan.steps), desc="steps", unit="step", disable=not show_progress)

    def finish(outcomes: list[StepOutcome], stats: dict[str, Any]) -> None:
        report.add(outcomes, stats)
        bar.update(len(outcomes))

    try:
        if jobs <= 1:
            for unit in todo:
                reason = report.blocked_by(unit)
                if reason:
                    finish([skipped(s, reason) for s in unit.steps], {})
                    continue
                bar.set_postfix_str(unit.label)
                finish(*execute_unit(unit, ctx))
        else:
            _run_concurrently(todo, ctx, jobs, report, finish)
    finally:
        bar.close()
        atomic_write_json(plan.output / "run.json", report.to_json())
    return report


def _run_concurrently(todo: list[Unit], ctx: RunContext, jobs: int, report: RunReport, finish: Any) -> None:
    one_at_a_time = {u.kind: threading.Lock() for u in todo if kind_of(u.kind).exclusive}
    finished: set[str] = set()
    pending = list(todo)
    running: dict[Future, Unit] = {}

    def work(unit: Unit) -> tuple[list[StepOutcome], dict[str, Any]]:
        lock = one_at_a_time.get(unit.kind)
        if lock is None:
            return execute_unit(unit, ctx)
        with lock:
            return execute_unit(unit, ctx)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for unit in list(pending):
                ins = unit.inputs
                if all(i.key in finished or report.settled(i.key) for i in ins):
                    pending.remove(unit)
                    reason = report.blocked_by(unit)
                    if reason:
                        outs = [skipped(s, reason) for s in unit.steps]
                        finish(outs, {})
                        finished.update(s.key for s in unit.steps)
                        continue
                    running[pool.submit(work, unit)] = unit
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                unit = running.pop(fut)
                outcomes, stats = fut.result()
                finish(outcomes, stats)
                finished.update(s.key for s in unit.steps)
