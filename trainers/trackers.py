"""Experiment trackers named by ``report_to:`` (as HF ``TrainingArguments.report_to``): TensorBoard,
Weights & Biases, MLflow, Trackio. They receive the numbers of ``metrics.jsonl`` (``trainers.metrics``),
which stays the record; a tracker is a view of it.

Each is an optional package: a missing one is a :class:`TrainInputError` naming the package and the
pip command, raised by ``prepare`` before anything is written (and by ``harness plan``/``run`` for a
matrix recipe). Only rank 0 opens trackers.

Credentials (``WANDB_API_KEY``, ``MLFLOW_TRACKING_URI`` / ``MLFLOW_TRACKING_TOKEN``, ``HF_TOKEN``
for a Trackio Space, ...) are read by each library from the environment; nothing here reads them
or writes the environment or a tracker's settings to a file. ``trackers.json`` in the output folder
holds only the run name and ids, so a resumed run continues the same tracker run.

Resume: TensorBoard is reopened with ``purge_step``, so the killed run's events past the checkpoint
are superseded by the resumed run's. W&B keeps the first value it received for a step and ignores
lower steps logged again, MLflow keeps every value logged (its history shows the step twice),
Trackio appends: as a resume is exact, the loss, lr and grad norm logged twice are equal; only the
timings of those few steps differ. ``metrics.jsonl`` holds exactly one line per step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import uuid
from pathlib import Path
from typing import Any, Protocol

from atomicio import atomic_write_json
from trainers.errors import TrainInputError

TENSORBOARD_DIR = "tensorboard"
STATE_FILE = "trackers.json"
DEFAULT_PROJECT = "e5-harness"  # Trackio's project unless TRACKIO_PROJECT names one (it has no default of its own)
SCALARS = ("loss", "lr", "grad_norm", "seconds", "examples_per_s", "tokens_per_s", "mfu", "peak_memory_gib")


def check_trackers(names: list[str], config_path: Path | None) -> None:
    """Every tracker asked for is importable, else one error naming the package and how to install it."""
    for name in names:  # each report_to name is its package's import and pip name
        if importlib.util.find_spec(name) is None:
            raise TrainInputError(config_path, "report_to", f"{name} is asked for but the {name!r} package is not installed",
                                  f"pip install {name}, or remove {name} from report_to")


def scalars(line: dict[str, Any]) -> dict[str, float]:
    """A metrics line's numbers as tracker scalars (``train/<field>``); null and non-finite ones are left out."""
    if line.get("kind") == "dev":  # a dev score: one scalar per task, beside the training curves
        value = line.get("main_score")
        return {f"dev/{line.get('task') or 'dev'}": float(value)} if isinstance(value, (int, float)) and math.isfinite(value) else {}
    return {f"train/{k}": float(line[k]) for k in SCALARS
            if isinstance(line.get(k), (int, float)) and math.isfinite(line[k])}


class Tracker(Protocol):
    def log(self, step: int, values: dict[str, float]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class TensorBoard:
    """``torch.utils.tensorboard.SummaryWriter`` into ``<output>/tensorboard/``.

    ``purge_step`` is the first step this run writes (steps are 1-based, a run resuming from
    checkpoint ``s`` writes ``s + 1`` first): readers drop every earlier event at or after it.
    """

    def __init__(self, output: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(output / TENSORBOARD_DIR), purge_step=start_step + 1)

    def log(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _RunTracker:
    """A tracker whose run object has ``log(values, step=)`` and ``finish()`` (W&B, Trackio)."""

    run: Any

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.run.finish()


class WandB(_RunTracker):
    def __init__(self, output: Path, state: dict[str, str], config: dict[str, Any]) -> None:
        import wandb

        # project and entity: WANDB_PROJECT / WANDB_ENTITY, as wandb reads them itself
        self.run = wandb.init(id=state["wandb_id"], name=state["name"], resume="allow", dir=str(output), config=config)


class Trackio(_RunTracker):
    def __init__(self, state: dict[str, str], config: dict[str, Any]) -> None:
        import trackio

        # a Space or server: TRACKIO_SPACE_ID / HF_TOKEN, as trackio reads them itself
        project = os.environ.get("TRACKIO_PROJECT", DEFAULT_PROJECT)
        self.run = trackio.init(project=project, name=state["name"], config=config, resume="allow")


class MLflow(_RunTracker):
    def __init__(self, state: dict[str, str], config: dict[str, Any]) -> None:
        import mlflow

        # tracking server and experiment: MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME, as mlflow reads them itself
        self.mlflow = mlflow
        run_id = state.get("mlflow_run_id")
        self.run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=state["name"])
        if not run_id:
            state["mlflow_run_id"] = self.run.info.run_id
            mlflow.log_params({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in config.items()})

    def log(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


class Trackers:
    """The trackers of one run (possibly none): each flushed window of metrics lines goes to all of them."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    def log(self, lines: list[dict[str, Any]]) -> None:
        for tracker in self.trackers:
            for line in lines:
                tracker.log(int(line["step"]), scalars(line))
            tracker.flush()

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def _state(output: Path, run_name: str) -> dict[str, str]:
    """The tracker run's name and ids, created once per output folder and kept for resumes."""
    path = output / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict) or not state.get("name"):
        state = {"name": f"{run_name}-{uuid.uuid4().hex[:6]}", "wandb_id": uuid.uuid4().hex[:16]}
    return state


def open_trackers(names: list[str], output: Path, *, start_step: int, run_name: str,
                  config: dict[str, Any]) -> Trackers:
    """Open each tracker in ``names`` for a run that writes steps ``start_step + 1`` onwards.

    ``config`` is what a tracker shows as the run's parameters: pass the recipe, never anything
    holding a credential."""
    trackers: list[Tracker] = []
    remote = [n for n in dict.fromkeys(names) if n != "tensorboard"]
    state = _state(output, run_name) if remote else {}
    if remote:  # before any run starts: a kill right after it must find the same ids
        atomic_write_json(output / STATE_FILE, state)
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            trackers.append(TensorBoard(output, start_step))
        elif name == "wandb":
            trackers.append(WandB(output, state, config))
        elif name == "mlflow":
            trackers.append(MLflow(state, config))
        elif name == "trackio":
            trackers.append(Trackio(state, config))
    if remote:  # MLflow's run id exists only once its run has started
        atomic_write_json(output / STATE_FILE, state)
    return Trackers(trackers)
