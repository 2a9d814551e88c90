"""The Ray executor: each unit of the plan is one Ray task; Ray schedules them on a cluster.

What running a unit means is shared with the local executor (:mod:`harness.pipeline.execute`);
this module only hands units to Ray:

- Each unit (one generate step, one train step, or the evaluate steps of one loaded model) is one
  ``ray.remote`` task. A task's arguments are the ObjectRefs of the units that produce its inputs,
  so Ray itself holds a task back until its inputs are finished. A task whose input failed (or was
  skipped) does not run its steps; the driver reports them as skipped, with the reason.
- A task receives its unit itself (the steps with their validated specs, pickled by Ray) and the
  run context (run folder, caches, device): the worker reads no matrix and no config file, so what
  runs is exactly what the driver planned and keyed. Evaluation data travels unloaded and is read
  from its folder by the unit that needs it.
- A unit whose steps want an accelerator (:attr:`~harness.steps.base.Step.gpu`, set by their kind:
  train and evaluate) asks for one GPU (``num_gpus=1``) when the cluster has GPUs, so one training
  step runs per GPU and a model's evaluation runs where the model is loaded. Without GPUs every
  unit asks for one CPU.
- Workers are given the environment variables every step's kind says it reads
  (:meth:`~harness.steps.kind.StepKind.environment`), besides those that steer the harness.
- Workers read and write the run folder and the embedding cache directly, through the same store
  contract as the local executor (flock claims, work dirs renamed into place). On a cluster of more
  than one machine the run folder and the cache (``HARNESS_CACHE_DIR``) must therefore be on a
  filesystem every node mounts at the same path, and the matrix and its data must be readable there
  too. See docs/distributed.md.

Ray is imported only inside the functions here: ``import harness`` never needs it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicio import atomic_write_json
from harness.errors import InputError
from harness.pipeline.execute import StepOutcome, Unit, fail, skipped, units
from harness.pipeline.local import RunReport, make_context
from harness.pipeline.planner import Plan
from harness.steps import kind_of
from harness.steps.context import RunContext

CONNECT_TIMEOUT_S = 5.0
# Environment the workers need to behave like this process (caches, offline mode, quiet tokenizers).
_FORWARDED_PREFIXES = ("HARNESS_", "MTEB_", "HF_", "TRANSFORMERS_", "SENTENCE_TRANSFORMERS_", "TOKENIZERS_")


@dataclass
class RayRunReport(RunReport):
    """A :class:`RunReport` plus where each unit ran (Ray task id, node, process, GPUs)."""

    executor: str = "ray"
    tasks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "ray_tasks": self.tasks}


# --- connecting -----------------------------------------------------------------------------------

def _address_problem(address: str) -> str | None:
    """Why ``address`` cannot be reached (TCP connect with a short timeout), or None if it answers."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return f"{address!r} is not a HOST:PORT address"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"nothing answers at {target} ({exc.strerror or type(exc).__name__})"


_FIX = ("start the head node with 'ray start --head --port=6379' and pass --address <head-ip>:6379 "
        "(or 'auto' on a cluster node), or drop --address to start a local Ray cluster")


def _connect(address: str | None, runtime_env: dict[str, Any]) -> bool:
    """Initialise Ray; returns True when this call started it (and so must shut it down).

    An unreachable address raises :class:`InputError` before anything is written to the run folder.
    """
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if ray.is_initialized():  # a caller (a notebook, a test) already connected: use that cluster
        return False
    if address not in (None, "auto", "local"):
        problem = _address_problem(address)
        if problem:
            raise InputError(None, "--address", f"cannot reach the Ray cluster: {problem}", _FIX)
    kw: dict[str, Any] = {"runtime_env": runtime_env, "logging_level": "WARNING", "log_to_driver": True}
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except ray.exceptions.AuthenticationError as exc:
        raise InputError(None, "--address", f"the Ray cluster at {address!r} refused this client's token: {exc.message}",
                         "run 'ray get-auth-token' on the head node and export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<token> here "
                         "(see docs/distributed.md)") from None
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        text = str(exc).rstrip(". ")
        fix = _FIX if "running Ray instance" in text else (
            "if the cluster uses token authentication (Ray's default), export RAY_AUTH_MODE=token and "
            "RAY_AUTH_TOKEN=<'ray get-auth-token' on the head>; check that this Ray version is the cluster's "
            "(docs/distributed.md)")
        raise InputError(None, "--address", f"cannot connect to the Ray cluster at {address!r}: {text}", fix) from None
    return True


def _runtime_env(plan: Plan) -> dict[str, Any]:
    """What every worker needs: this ``harness`` on its path, and the caches/keys this process uses."""
    import harness

    root = str(Path(harness.__file__).resolve().parent.parent)
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env = {"PYTHONPATH": os.pathsep.join(paths), "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    names = {"OPENAI_BASE_URL", "OPENAI_API_KEY"}
    for step in plan.steps:  # what each step reads where it runs (API models' and generation backends' endpoints, keys)
        names.update(kind_of(step.kind).environment(step))
    for k, v in os.environ.items():
        if k.startswith(_FORWARDED_PREFIXES) or k in names:
            env[k] = v
    return {"env_vars": env}


# --- the worker side ------------------------------------------------------------------------------

def _blocked(inputs: tuple[dict[str, Any], ...]) -> bool:
    return any(r["outcomes"] is None or any(o.status in ("failed", "skipped") for o in r["outcomes"]) for r in inputs)


def run_unit_task(unit: Unit, ctx: RunContext, *inputs: dict[str, Any]) -> dict[str, Any]:
    """Body of one Ray task: run ``unit`` against the store, in the context the driver planned it in.

    ``inputs`` are the results of the units this one depends on (Ray resolves the ObjectRefs before
    the task starts). If one of them failed, nothing runs and ``outcomes`` is None: the driver
    reports the steps as skipped.
    """
    import ray

    ctx_ray = ray.get_runtime_context()
    where = {"uid": unit.uid, "task_id": ctx_ray.get_task_id(), "node_id": ctx_ray.get_node_id(), "pid": os.getpid(),
             "host": socket.gethostname(), "gpus": [str(g) for g in ray.get_gpu_ids()]}
    if _blocked(inputs):
        return {"uid": unit.uid, "outcomes": None, "stats": {}, "where": where}
    import logging
    import warnings

    from harness.pipeline.execute import execute_unit
    from harness.third_party_output import progress_bars_hidden

    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    start = time.monotonic()
    with progress_bars_hidden(True):
        outcomes, stats = execute_unit(unit, ctx)
    where["seconds"] = round(time.monotonic() - start, 3)
    return {"uid": unit.uid, "outcomes": outcomes, "stats": stats, "where": where}


# --- the driver -----------------------------------------------------------------------------------

def _producers(todo: list[Unit]) -> dict[str, Unit]:
    return {s.key: u for u in todo for s in u.steps}


def run_plan_on_ray(plan: Plan, *, address: str | None, show_progress: bool, device: str | None) -> RunReport:
    """Run every unit of ``plan`` as a Ray task on the cluster at ``address`` (None: start a local one)."""
    from tqdm.auto import tqdm

    runtime_env = _runtime_env(plan)
    started = _connect(address, runtime_env)  # before anything touches the run folder
    import ray

    try:
        ctx = make_context(plan, show_progress=False, device=device)
        worker_ctx = ctx.for_worker()
        report = RayRunReport(output=plan.output)
        todo = units(plan)
        order = {u.uid: i for i, u in enumerate(todo)}
        producer = _producers(todo)
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(run_unit_task)
        refs: dict[str, Any] = {}
        pending: dict[Any, Unit] = {}
        for unit in todo:  # topological order: every input's ref exists already
            deps = list({producer[i.key].uid: refs[producer[i.key].uid] for i in unit.inputs if i.key in producer}.values())
            gpus = 1 if has_gpu and unit.gpu else 0
            ref = remote.options(name=unit.label[:120], num_cpus=1, num_gpus=gpus, max_retries=1,
                                 runtime_env=None if started else runtime_env).remote(
                unit, worker_ctx, *deps)
            refs[unit.uid] = ref
            pending[ref] = unit
        bar = tqdm(total=len(plan.steps), desc="steps (ray)", unit="step", disable=not show_progress)

        def finish(outcomes: list[StepOutcome], stats: dict[str, Any]) -> None:
            report.add(outcomes, stats)
            bar.update(len(outcomes))

        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                more, _ = ray.wait([r for r in pending if r not in ready], num_returns=len(pending) - len(ready), timeout=0)
                # A unit is ready only after its inputs, so in index order its inputs are recorded first.
                for ref in sorted([*ready, *more], key=lambda r: order[pending[r].uid]):
                    unit = pending.pop(ref)
                    try:
                        res = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the task died (worker crash, node lost) or its input did
                        reason = report.blocked_by(unit)
                        finish([skipped(s, reason) for s in unit.steps] if reason else [fail(s, ctx, exc) for s in unit.steps], {})
                        continue
                    report.tasks.append(res["where"])
                    if res["outcomes"] is None:
                        reason = report.blocked_by(unit) or "an input did not finish"
                        finish([skipped(s, reason) for s in unit.steps], {})
                    else:
                        finish(res["outcomes"], res["stats"])
                    bar.set_postfix_str(unit.label)
        finally:
            bar.close()
            for ref in pending:  # interrupted: do not leave work running on the cluster
                ray.cancel(ref)
            atomic_write_json(plan.output / "run.json", report.to_json())
        return report
    finally:
        if started:
            ray.shutdown()
