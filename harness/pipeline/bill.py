"""The bill before it is paid: what ``harness plan`` says each step will cost, and the total.

Each kind estimates its own steps (:meth:`harness.steps.kind.StepKind.estimate`); this module only
asks them, for the steps that are not done, and adds up every kind's estimates alike (GPU-hours also
per registered kind), so a new kind's cost is in the total without a line here. A step's status is
``cached`` (done: it costs nothing), ``resumable`` (a killed try left work the next one continues
from: checkpoints), or ``to run``. For generate steps the LLM calls are split into those the run's
response cache already answers (free) and those still to pay; dollars are for the latter only, an
upper bound (output at ``max_tokens``). A failed estimate is shown as such and never stops the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.pipeline.planner import Plan
from harness.steps import kind_of, kinds
from harness.steps.base import Estimate, Step
from harness.steps.context import RunContext
from harness.steps.quantities import GPU, gpu_time, hours


@dataclass
class StepBill:
    step: Step
    status: str  # "cached" | "resumable" | "to run"
    progress: str | None  # what a resumable step continues from
    estimate: Estimate | None  # None when cached
    caches: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        s = self.step
        return {"kind": s.kind, "label": s.label, "key": s.key, "inputs": [i.key for i in s.inputs], "status": self.status,
                **({"progress": self.progress} if self.progress else {}),
                "cost": self.estimate.to_json() if self.estimate is not None else {"summary": "cached: costs nothing"},
                "caches": self.caches}


def bill(plan: Plan, ctx: RunContext | None = None) -> list[StepBill]:
    ctx = ctx or plan.context()
    store = ctx.store
    out = []
    for step in plan.steps:
        kind = kind_of(step.kind)
        caches = [{"cache": c.name, "path": str(c.path), "mode": c.mode} for c in kind.caches(step, ctx)]
        if store.is_done(step.kind, step.key):
            out.append(StepBill(step, "cached", None, None, caches))
            continue
        work = store.work_dir(step.kind, step.key)
        progress = kind.progress(step, work) if kind.resumes and work.is_dir() else None
        try:
            est = kind.estimate(step, ctx)
        except Exception as exc:  # noqa: BLE001 - an estimate is advice; planning must go on
            est = Estimate(summary=f"no estimate ({type(exc).__name__}: {exc})", gpu_hours=None)
        out.append(StepBill(step, "resumable" if progress else "to run", progress, est, caches))
    return out


def total(bills: list[StepBill]) -> dict[str, Any]:
    todo = [b for b in bills if b.estimate is not None]
    ests = [b.estimate for b in todo if b.estimate is not None]
    by_kind = {kind: sum(b.estimate.gpu_hours or 0.0 for b in todo if b.step.kind == kind and b.estimate) for kind in kinds()}
    return {
        "steps_to_run": len(todo),
        "steps_cached": len(bills) - len(todo),
        "steps_resumable": sum(b.status == "resumable" for b in bills),
        "llm_calls_to_pay": sum(e.llm_calls for e in ests if not e.local_llm),
        "llm_calls_cached": sum(e.llm_calls_cached for e in ests),
        "llm_calls_local": sum(e.llm_calls for e in ests if e.local_llm),
        "usd": round(sum(e.usd or 0.0 for e in ests), 2),
        "usd_is_upper_bound": True,
        "unpriced_models": sorted({m for e in ests for m in e.unpriced_models}),
        "gpu": GPU,
        "gpu_hours": sum(e.gpu_hours or 0.0 for e in ests),
        **{f"gpu_hours_{kind}": h for kind, h in by_kind.items()},
        "local_llm_hours": sum(e.local_llm_hours or 0.0 for e in ests if e.local_llm),
        "steps_without_estimate": sum(e.unknown for e in ests),
    }


def describe_total(t: dict[str, Any]) -> str:
    """The one line ``harness plan`` ends with."""
    if not t.get("steps_to_run"):
        return "nothing to run ($0, 0 GPU-hours)"
    parts = []
    if t["llm_calls_to_pay"] or t["llm_calls_cached"]:
        usd = f"≤ ${t['usd']:,.0f}" if t["usd"] >= 10 else f"≤ ${t['usd']:,.2f}"
        unpriced = f" + unpriced calls to {', '.join(t['unpriced_models'])}" if t.get("unpriced_models") else ""
        cached = f" ({t['llm_calls_cached']:,} more answered by the response cache, $0)" if t["llm_calls_cached"] else ""
        parts.append(f"{usd} LLM API for {t['llm_calls_to_pay']:,} calls to pay (output at max_tokens){unpriced}{cached}")
    if t["gpu_hours"] >= 1:
        per_kind = ", ".join(f"{kind} {hours(t[f'gpu_hours_{kind}'])}" for kind in kinds() if t.get(f"gpu_hours_{kind}"))
        parts.append(f"{hours(t['gpu_hours'])} GPU-hours on one {GPU} ({per_kind})")
    else:
        parts.append(f"{gpu_time(t['gpu_hours'])} on one GPU")
    if t.get("llm_calls_local"):
        h = f"≤{hours(t['local_llm_hours'])} h of" if t.get("local_llm_hours") else "time unknown,"
        parts.append(f"{h} local LLM generation ({t['llm_calls_local']:,} calls, $0)")
    text = " + ".join(parts)
    if t.get("steps_without_estimate"):
        text += f"; {t['steps_without_estimate']} step(s) without an estimate"
    return text


def describe(plan: Plan, bills: list[StepBill]) -> dict[str, Any]:
    """The plan as JSON (``harness plan --json``): models, each step with status, cost and caches, the total."""
    return {
        "output": str(plan.output),
        "models": [{"model": mp.spec.name, "backend": mp.decision.backend, "reason": mp.decision.reason, "revision": mp.revision,
                    **({"train_step": mp.train.key} if mp.train else {})} for mp in plan.models],
        "steps": [b.to_json() for b in bills],
        "cost_total": total(bills),
        "notes": plan.notes,
    }
