"""Coverage-honest aggregation of main scores into the tables a report shows.

The scope of a report is what the run evaluated: baselines are cut down to those tasks, splits and
subsets (a reference model has hundreds of tasks the run never touched). A model "covers" a task
only if it has every in-scope score of it. A category average is taken over all of the run's tasks
of that category, for each model that covers all of them; a model lacking part of a category gets
no average there ("—" with its coverage) instead of shrinking the category for everyone — one
reference model without Tatoeba must not empty the BitextMining column of the run itself. So a
model is never ranked on an easier subset, and the run's own rows always show. Reference models
with no score on any of the run's tasks are left out and named once. Ranks are competition ranks of
the displayed (rounded) numbers, so two models showing the same score share a rank.
Scores are only averaged here: every number was computed by mteb.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from pydantic import BaseModel

from leaderboards.scores import ModelResults, ScoreKey
from leaderboards.paired_comparison import ModelComparison
from leaderboards.task_metadata import OVERALL, category_order, is_beir, task_type
from leaderboards.training_record import TrainingRecord


class EntryInfo(BaseModel):
    label: str
    name: str
    revision: str
    origin: str
    location: str
    tasks_covered: int
    tasks_total: int
    scores_covered: int
    scores_total: int
    overall: float | None = None
    rank: int | None = None


class CategoryAverage(BaseModel):
    """Average main score of one category, per model, over all of the run's tasks of that category.

    ``averages[label]`` is None for a model lacking any of them; ``missing`` says which it lacks."""

    category: str
    tasks: list[str]
    tasks_total: int
    missing: dict[str, list[str]]  # label -> tasks of this category it lacks (only labels lacking some)
    coverage: dict[str, int]  # label -> tasks of this category it covers
    averages: dict[str, float | None]


class ScoreRow(BaseModel):
    """One task (``split``/``subset`` empty) or one (task, split, subset) across all models."""

    task: str
    task_type: str
    split: str = ""
    subset: str = ""
    n_scores: int = 1
    languages: list[str] = []
    scores: dict[str, float | None]
    deltas: dict[str, float | None]
    ranks: dict[str, int | None]


class Report(BaseModel):
    title: str
    run_location: str
    reference_label: str
    reference_provenance: str | None
    entries: list[EntryInfo]
    categories: list[CategoryAverage]
    overall: CategoryAverage
    tasks: list[ScoreRow]
    beir: list[ScoreRow]
    beir_average: CategoryAverage | None
    languages: list[ScoreRow]
    subsets: list[ScoreRow]
    notes: list[str]
    left_out: list[str] = []  # reference/baseline models with no score on any of the run's tasks
    trained_vs_base: list[ModelComparison] = []  # each trained model of the run against its evaluated base
    training: list[TrainingRecord] = []  # how each trained model of the run was trained
    pairing_notes: list[str] = []  # trained models that could not be paired with their base, and why


def assign_labels(run_models: list[ModelResults], baselines: list[ModelResults]) -> list[tuple[str, ModelResults]]:
    """Unique display labels: a run model keeps its name; a baseline of the same name is marked as such."""
    labelled: list[tuple[str, ModelResults]] = []
    names = [m.name for m in run_models]
    for model in run_models:
        label = model.name if names.count(model.name) == 1 else f"{model.name}@{model.revision[:8]}"
        labelled.append((label, model))
    taken = {label for label, _ in labelled}
    for model in baselines:
        suffix = "MTEB reference" if model.origin == "reference" else "baseline"
        label = model.name if model.name not in taken else f"{model.name} ({suffix})"
        if label in taken:
            continue
        taken.add(label)
        labelled.append((label, model))
    return labelled


def displayed(value: float) -> float:
    """The number a reader sees (MTEB points, two decimals): ranks compare these, not raw floats."""
    return round(100 * value, 2)


def competition_ranks(values: dict[str, float | None]) -> dict[str, int | None]:
    """Competition ranking (1 = best; equal displayed scores share a rank) among models that have a value."""
    present = sorted((displayed(v) for v in values.values() if v is not None), reverse=True)
    return {k: (present.index(displayed(v)) + 1 if v is not None else None) for k, v in values.items()}


def _row(task: str, ttype: str, scores: dict[str, float | None], reference: str, **extra: object) -> ScoreRow:
    ref = scores.get(reference)
    deltas = {k: (v - ref if v is not None and ref is not None else None) for k, v in scores.items()}
    return ScoreRow(task=task, task_type=ttype, scores=scores, deltas=deltas, ranks=competition_ranks(scores), **extra)


def _category(name: str, tasks: list[str], task_scores: dict[str, dict[str, float | None]], labels: list[str]) -> CategoryAverage:
    lacking = {l: [t for t in tasks if task_scores[t][l] is None] for l in labels}
    averages = {l: (fmean(task_scores[t][l] for t in tasks) if tasks and not lacking[l] else None) for l in labels}  # type: ignore[misc]
    coverage = {l: len(tasks) - len(lacking[l]) for l in labels}
    return CategoryAverage(category=name, tasks=list(tasks), tasks_total=len(tasks),
                           missing={l: m for l, m in lacking.items() if m}, coverage=coverage, averages=averages)


def build_report(
    run_models: list[ModelResults],
    baselines: list[ModelResults],
    reference: str,
    *,
    title: str,
    run_location: str,
    reference_provenance: str | None = None,
) -> Report:
    """Aggregate; ``reference`` is the label (see ``assign_labels``) deltas are taken against."""
    scope: dict[str, list[ScoreKey]] = defaultdict(list)
    for key in sorted({k for m in run_models for k in m.scores}):
        scope[key.task].append(key)
    in_scope = {k for keys in scope.values() for k in keys}
    labelled_all = assign_labels(run_models, baselines)
    if reference not in [label for label, _ in labelled_all]:
        raise ValueError(f"reference {reference!r} is not among {[label for label, _ in labelled_all]}")
    run_ids = {id(m) for m in run_models}
    labelled = [(label, m) for label, m in labelled_all
                if id(m) in run_ids or label == reference or in_scope & set(m.scores)]
    kept = {id(m) for _, m in labelled}
    left_out = [label for label, m in labelled_all if id(m) not in kept]
    labels = [label for label, _ in labelled]
    tasks = sorted(scope)
    fallback = {t: next((m.task_types[t] for _, m in labelled if t in m.task_types), None) for t in tasks}
    types = {t: task_type(t, fallback[t]) for t in tasks}

    task_scores: dict[str, dict[str, float | None]] = {}
    subset_rows: list[ScoreRow] = []
    for task in tasks:
        per_model: dict[str, float | None] = {}
        for label, model in labelled:
            values = [model.scores.get(k) for k in scope[task]]
            per_model[label] = fmean(values) if all(v is not None for v in values) else None
        task_scores[task] = per_model
        for key in scope[task]:
            langs = next((list(m.languages[key]) for _, m in labelled if m.languages.get(key)), [])
            subset_rows.append(_row(task, types[task], {l: m.scores.get(key) for l, m in labelled}, reference,
                                    split=key.split, subset=key.subset, languages=langs))

    task_rows = [
        _row(t, types[t], task_scores[t], reference, n_scores=len(scope[t]),
             split=",".join(sorted({k.split for k in scope[t]})))
        for t in tasks
    ]
    by_category: dict[str, list[str]] = defaultdict(list)
    for t in tasks:
        by_category[types[t]].append(t)
    categories = [_category(c, by_category[c], task_scores, labels) for c in category_order(set(by_category))]
    overall = _category(OVERALL, tasks, task_scores, labels)
    beir_tasks = [t for t in tasks if is_beir(t)]
    multilingual = {t for t in tasks if any(k.subset != "default" for k in scope[t])}

    overall_ranks = competition_ranks(overall.averages)
    entries: list[EntryInfo] = []
    for label, model in labelled:
        keys_total = sum(len(v) for v in scope.values())
        entries.append(EntryInfo(
            label=label, name=model.name, revision=model.revision, origin=model.origin, location=model.location,
            tasks_covered=overall.coverage[label], tasks_total=len(tasks),
            scores_covered=sum(k in model.scores for ks in scope.values() for k in ks), scores_total=keys_total,
            overall=overall.averages[label], rank=overall_ranks[label],
        ))
    # Summary order: by rank; unranked models (no overall average) after, run models first among them.
    entries.sort(key=lambda e: (e.rank is None, e.rank or 0, e.origin != "run"))
    notes = [f"{label}: {msg}" for label, m in labelled for msg in m.skipped]
    return Report(
        title=title, run_location=run_location, reference_label=reference,
        reference_provenance=reference_provenance, entries=entries, categories=categories, overall=overall,
        tasks=task_rows, beir=[r for r in task_rows if r.task in beir_tasks],
        beir_average=_category("BEIR", beir_tasks, task_scores, labels) if beir_tasks else None,
        languages=[r for r in subset_rows if r.task in multilingual], subsets=subset_rows, notes=notes,
        left_out=left_out,
    )
