"""What a run's train step did, read back from its folder: curves, the mixture, time and cost.

A report that says "the trained model is 2 points better" is only half an ablation: the reader
also needs what it was trained on and how (examples per source, the generated sets' task types
and languages, steps, wall time, GPU-hours, the generation bill) and whether training went well
(the loss, the learning rate, the dev score). All of it is already in the run folder:

- ``steps/train/<key>/manifest.json``: the step's label, params (``base``: the base's content
  identity), inputs (label -> key of the generate steps it read) and ``seconds``;
- ``steps/train/<key>/model/training.json``: ``losses`` (one per step), ``steps``, ``processes``,
  ``data.counts`` per source;
- ``steps/train/<key>/metrics.jsonl`` when the trainer wrote it: ``train`` lines (loss, lr,
  peak memory on CUDA) and ``dev`` lines (a dev task's main score); it wins over ``losses``;
- ``steps/generate/<key>/manifest.json``: summary ``kept``, ``counts`` per task type and
  language, ``cost_usd``.

Nothing here is estimated: a number the folder does not hold is shown as unknown. Results copied
without their ``steps/`` folder still report, with a note saying what is missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from inputio import field_problem, iter_json_objects
from pydantic import BaseModel, Field, ValidationError

from leaderboards.errors import LeaderboardInputError
from leaderboards.results_reader import read_json
from leaderboards.schemas import _Tolerant, parse_file
from leaderboards.scores import ModelResults

_REWRITE = "re-run the step (delete its folder under steps/) or restore the file from the run that wrote it"


class StepManifestFile(_Tolerant):
    """``steps/<kind>/<key>/manifest.json``: the parts a report reads."""

    kind: str
    key: str
    label: str
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(default_factory=dict)  # input step label -> key
    summary: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0


class MixtureData(_Tolerant):
    counts: dict[str, int] = Field(default_factory=dict)


class TrainingCardFile(_Tolerant):
    """``model/training.json``, written by the trainer beside the exported model."""

    steps: int | None = None
    losses: list[float | None] = Field(default_factory=list)
    processes: int = 1
    data: MixtureData = Field(default_factory=MixtureData)


class MetricsLine(_Tolerant):
    """One line of ``metrics.jsonl``: ``{"kind": "train", "step", "loss", "lr", "seconds", "mfu",
    "peak_memory_gib", ...}`` (``mfu``/``peak_memory_gib`` null off CUDA; the trainer's full list is
    in ``trainers/metrics.py``) or ``{"kind": "dev", "step", "task", "main_score", "scores"}``;
    ``step`` is the 1-based optimizer step."""

    kind: str
    step: int
    loss: float | None = None
    lr: float | None = None
    seconds: float | None = None
    mfu: float | None = None
    peak_memory_gib: float | None = None
    task: str | None = None
    main_score: float | None = None


class GenerateSummary(_Tolerant):
    kept: int | None = None
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)  # task_type / language -> count
    cost_usd: float | None = None


class Curve(BaseModel):
    """One line of a chart: y values at optimizer steps (1-based)."""

    name: str
    steps: list[int]
    values: list[float]


class GeneratedSet(BaseModel):
    label: str
    key: str
    kept: int | None
    counts: dict[str, dict[str, int]]
    cost_usd: float | None


class TrainingRecord(BaseModel):
    """One trained model of a run, as its train step's folder describes it."""

    model: str  # display label
    revision: str
    train_step: str
    trained_from: str | None
    label: str | None = None  # the train step's label ("train <entry>")
    base_identity: str | None = None  # params.base: the base model's content identity
    steps: int | None = None
    seconds: float | None = None
    processes: int = 1
    gpu_hours: float | None = None
    gpu_note: str = "unknown: no metrics.jsonl"
    source_counts: dict[str, int] = Field(default_factory=dict)
    generated: list[GeneratedSet] = Field(default_factory=list)
    generation_cost_usd: float | None = None
    curves_from: str | None = None  # "metrics.jsonl" | "training.json"
    loss: Curve | None = None
    lr: Curve | None = None
    dev: list[Curve] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def run_folder_of(model: ModelResults) -> Path:
    """``<run>/results/<model>/<revision>`` -> ``<run>``."""
    return Path(model.location).parents[2]


def _manifest(path: Path) -> StepManifestFile:
    return parse_file(StepManifestFile, read_json(path), path, _REWRITE, what="a step manifest")


def read_metrics(path: Path) -> list[MetricsLine]:
    """Every line of a ``metrics.jsonl``; a cut-off last line (a run killed mid-write) is left out.

    A resumed run writes one ``train`` line per step; if a step appears twice anyway, the later
    line wins (the curves key lines by step), as it is the one the resumed run continued from.
    """
    failed: list[int | None] = []

    def error(where: Path, line: int | None, problem: str, fix: str) -> LeaderboardInputError:
        failed.append(line)
        return LeaderboardInputError(where, f"line {line}" if line else None, problem, fix)

    data = path.read_bytes()
    last = data.count(b"\n") + (not data.endswith(b"\n"))
    out: list[MetricsLine] = []
    try:
        for number, raw in iter_json_objects(path, error, fix=_REWRITE):
            try:
                out.append(MetricsLine.model_validate(raw))
            except ValidationError as exc:
                fp = field_problem(exc)
                raise LeaderboardInputError(path, f"line {number}: {fp.field or '<top level>'}", fp.problem,
                                            'every line needs "kind" ("train" or "dev") and "step"') from exc
    except LeaderboardInputError:
        if not (failed == [last] and not data.endswith(b"\n")):  # only the unterminated last line may be cut off
            raise
    return out


def _curve(name: str, points: dict[int, float | None]) -> Curve | None:
    kept = [(s, v) for s, v in sorted(points.items()) if v is not None and math.isfinite(v)]
    return Curve(name=name, steps=[s for s, _ in kept], values=[v for _, v in kept]) if kept else None


def _curves(record: TrainingRecord, card: TrainingCardFile | None, metrics: list[MetricsLine]) -> None:
    """Loss from metrics.jsonl's train lines, else training.json's ``losses``; lr and dev only from metrics."""
    train = {m.step: m for m in metrics if m.kind == "train"}  # a repeated step: the later line wins
    record.loss = _curve("loss", {s: m.loss for s, m in train.items()})
    record.curves_from = "metrics.jsonl" if record.loss else None
    if record.loss is None and card is not None and card.losses:
        record.loss = _curve("loss", {i + 1: v for i, v in enumerate(card.losses)})
        record.curves_from = "training.json" if record.loss else None
    record.lr = _curve("learning rate", {s: m.lr for s, m in train.items()})
    tasks = sorted({m.task or "dev" for m in metrics if m.kind == "dev"})
    record.dev = [c for t in tasks if (c := _curve(t, {m.step: m.main_score for m in metrics
                                                         if m.kind == "dev" and (m.task or "dev") == t}))]
    if any(m.peak_memory_gib is not None or m.mfu is not None for m in train.values()):
        if record.seconds is not None:
            record.gpu_hours = record.seconds * record.processes / 3600
            record.gpu_note = f"wall time × {record.processes} process(es) on CUDA"
    elif train:
        record.gpu_hours, record.gpu_note = 0.0, "trained without CUDA (metrics.jsonl shows no GPU memory)"


def read_training(model: ModelResults, label: str) -> TrainingRecord:
    """The training record of a model the run trained (``model.train_step`` set)."""
    assert model.train_step is not None
    run = run_folder_of(model)
    step_dir = run / "steps" / "train" / model.train_step
    record = TrainingRecord(model=label, revision=model.revision, train_step=model.train_step,
                            trained_from=model.trained_from)
    manifest_path = step_dir / "manifest.json"
    if not manifest_path.is_file():
        record.notes.append(f"train step folder {step_dir} not found (results copied without steps/?): "
                            "no mixture, time or curves")
        return record
    manifest = _manifest(manifest_path)
    record.label, record.seconds = manifest.label, manifest.seconds
    base = manifest.params.get("base")
    record.base_identity = base if isinstance(base, str) else None
    card_path = step_dir / "model" / "training.json"
    card = parse_file(TrainingCardFile, read_json(card_path), card_path, _REWRITE,
                      what="a trainer's training.json") if card_path.is_file() else None
    if card is None:
        record.notes.append(f"{card_path} not found: no per-source counts or losses")
    else:
        record.steps, record.processes, record.source_counts = card.steps, card.processes, dict(card.data.counts)
    metrics_path = step_dir / "metrics.jsonl"
    _curves(record, card, read_metrics(metrics_path) if metrics_path.is_file() else [])
    for input_label, key in manifest.inputs.items():
        gen_path = run / "steps" / "generate" / key / "manifest.json"
        if not gen_path.is_file():
            continue  # another kind of input (a trained base's train step)
        summary = parse_file(GenerateSummary, _manifest(gen_path).summary, gen_path, _REWRITE,
                             what="a generate step's manifest (summary)")
        record.generated.append(GeneratedSet(label=input_label, key=key, kept=summary.kept,
                                             counts=summary.counts, cost_usd=summary.cost_usd))
    costs = [g.cost_usd for g in record.generated]
    if costs and all(c is not None for c in costs):
        record.generation_cost_usd = sum(costs)  # type: ignore[arg-type]
    return record
