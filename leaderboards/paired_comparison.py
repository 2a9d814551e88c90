"""Model B against model A of one run (a trained model against its base): is each difference more than noise?

Rows: every task, its split/subset scores when it has several, every MTEB category and the overall
average, each with Δ = B − A of the number the report shows. Each row is tested on the per-query
scores kept beside the results, two-sided at tolerance 0 (the gate's paired sign-flip test):

- a single score: :func:`paired_test` over its queries;
- a row averaging several scores (a multilingual task, a category, overall): the same test of the
  row's own statistic, the weighted mean of per-score mean differences with the weights the
  average uses (:func:`stratified_paired_test`; signs flip per query, so it is exact under H0 for
  any mix of query counts). Pooling the queries instead would weight a 7,000-query task 7,000
  times a 50-query one and test a number the report never shows; a test on per-task means would
  have a handful of observations (two tasks cannot reach p < 0.5).

A row is tested only when every score it averages has per-query scores on both sides; otherwise
it says so rather than testing part of it. Rows built from the very same scores (a category of one
task) share one test. Holm's adjustment runs once over all distinct tests of the table, so "some
row is marked significant although nothing changed" has probability at most alpha.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean
from typing import Literal

from pydantic import BaseModel

from leaderboards.per_query import per_query_scores
from leaderboards.scores import ModelResults, ScoreKey
from leaderboards.significance import PairedTestResult, holm_adjust, stratified_paired_test
from leaderboards.task_metadata import OVERALL, category_order, task_type

ALPHA = 0.05
NO_PER_QUERY = "no per-query scores"
SAME_SCORES = "same scores as "  # a row averaging exactly the scores of an earlier row shares its test

Level = Literal["score", "task", "category", "overall"]


class ComparedRow(BaseModel):
    """One row of the table; scores and Δ on MTEB's 0-1 scale (renderers show ×100)."""

    level: Level
    category: str
    task: str = ""
    split: str = ""
    subset: str = ""
    scores: int = 1  # how many (task, split, subset) scores the row averages
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    n_queries: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    significant: bool = False
    note: str = ""

    @property
    def name(self) -> str:
        if self.level in ("category", "overall"):
            return self.category
        return f"{self.task} {self.split}/{self.subset}" if self.level == "score" else self.task


class ModelComparison(BaseModel):
    baseline: str  # display labels
    candidate: str
    baseline_revision: str
    candidate_revision: str
    alpha: float
    n_resamples: int
    seed: int
    tests: int  # size of the Holm family: the distinct tests of the table
    rows: list[ComparedRow]

    @property
    def significant(self) -> int:
        return sum(r.significant for r in self.rows)


Members = tuple[tuple[ScoreKey, float], ...]  # scores a row averages, with their weights


def _mean(model: ModelResults, keys: list[ScoreKey]) -> float | None:
    values = [model.scores.get(k) for k in keys]
    return fmean(values) if values and all(v is not None for v in values) else None  # type: ignore[arg-type]


class _Tester:
    """Per-query files read once per score; one test per distinct member set."""

    def __init__(self, base: ModelResults, cand: ModelResults, n_resamples: int, seed: int) -> None:
        self.base, self.cand, self.n_resamples, self.seed = base, cand, n_resamples, seed
        self._queries: dict[ScoreKey, tuple[dict[str, float], dict[str, float]] | None] = {}
        self.results: dict[Members, PairedTestResult | None] = {}
        self.first_row: dict[Members, str] = {}
        self.tested: list[tuple[ComparedRow, Members]] = []

    def queries(self, key: ScoreKey) -> tuple[dict[str, float], dict[str, float]] | None:
        if key not in self._queries:
            b, c = per_query_scores(self.base, key), per_query_scores(self.cand, key)
            self._queries[key] = (b, c) if b is not None and c is not None else None
        return self._queries[key]

    def fill(self, row: ComparedRow, members: Members) -> ComparedRow:
        if row.delta is None:
            return row
        pairs = [self.queries(k) for k, _ in members]
        lacking = sum(p is None for p in pairs)
        if lacking:
            row.note = NO_PER_QUERY if lacking == len(pairs) else f"{NO_PER_QUERY} for {lacking} of {len(pairs)} scores"
            return row
        if members in self.first_row:
            row.note = SAME_SCORES + self.first_row[members]
        else:
            self.first_row[members] = row.name
            self.results[members] = stratified_paired_test(
                [(b, c, w) for (b, c), (_, w) in zip(pairs, members)],  # type: ignore[misc]
                alternative="two-sided", tolerance=0.0, n_resamples=self.n_resamples, seed=self.seed)
        result = self.results[members]
        if result is None:
            row.note = "fewer than two queries scored on both sides"
            return row
        row.n_queries, row.p_value = result.n_queries, result.p_value
        row.ci_low, row.ci_high = result.ci_low, result.ci_high
        self.tested.append((row, members))
        return row

    def holm(self, alpha: float) -> int:
        """Adjust every tested row over the distinct tests; returns the family's size."""
        family = [m for m, r in self.results.items() if r is not None]
        adjusted = dict(zip(family, holm_adjust([self.results[m].p_value for m in family])))  # type: ignore[union-attr]
        for row, members in self.tested:
            row.p_adjusted = adjusted[members]
            row.significant = row.p_adjusted < alpha
        return len(family)


def _row(level: Level, category: str, base: float | None, cand: float | None, **extra: object) -> ComparedRow:
    delta = cand - base if base is not None and cand is not None else None
    row = ComparedRow(level=level, category=category, baseline=base, candidate=cand, delta=delta, **extra)  # type: ignore[arg-type]
    if delta is None:
        row.note = "no score for " + " and ".join(n for n, v in (("the baseline", base), ("the candidate", cand)) if v is None)
    return row


def compare_models(
    baseline: ModelResults,
    candidate: ModelResults,
    *,
    baseline_label: str | None = None,
    candidate_label: str | None = None,
    alpha: float = ALPHA,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> ModelComparison:
    """The table for every score either model has (a score only one has shows without Δ)."""
    keys_by_task: dict[str, list[ScoreKey]] = defaultdict(list)
    for key in sorted(set(baseline.scores) | set(candidate.scores)):
        keys_by_task[key.task].append(key)
    types = {t: task_type(t, candidate.task_types.get(t) or baseline.task_types.get(t)) for t in keys_by_task}
    by_category: dict[str, list[str]] = defaultdict(list)
    for t in sorted(keys_by_task):
        by_category[types[t]].append(t)
    tester = _Tester(baseline, candidate, n_resamples, seed)
    rows: list[ComparedRow] = []

    def task_members(task: str, weight: float) -> Members:
        keys = keys_by_task[task]
        return tuple((k, weight / len(keys)) for k in keys)

    def aggregate(level: Level, name: str, tasks: list[str]) -> ComparedRow:
        b = [_mean(baseline, keys_by_task[t]) for t in tasks]
        c = [_mean(candidate, keys_by_task[t]) for t in tasks]
        row = _row(level, name, fmean(b) if None not in b else None, fmean(c) if None not in c else None,  # type: ignore[arg-type]
                   scores=sum(len(keys_by_task[t]) for t in tasks))
        return tester.fill(row, tuple(m for t in tasks for m in task_members(t, 1.0 / len(tasks))))

    for category in category_order(set(by_category)):
        for task in by_category[category]:
            keys = keys_by_task[task]
            where = {"split": keys[0].split, "subset": keys[0].subset} if len(keys) == 1 else {}
            row = _row("task", category, _mean(baseline, keys), _mean(candidate, keys), task=task, scores=len(keys), **where)
            rows.append(tester.fill(row, task_members(task, 1.0)))
            if len(keys) > 1:
                for k in keys:
                    sub = _row("score", category, baseline.scores.get(k), candidate.scores.get(k),
                               task=task, split=k.split, subset=k.subset)
                    rows.append(tester.fill(sub, ((k, 1.0),)))
        rows.append(aggregate("category", category, by_category[category]))
    rows.append(aggregate("overall", OVERALL, sorted(keys_by_task)))

    tests = tester.holm(alpha)
    return ModelComparison(baseline=baseline_label or f"{baseline.name}@{baseline.revision}",
                           candidate=candidate_label or f"{candidate.name}@{candidate.revision}",
                           baseline_revision=baseline.revision, candidate_revision=candidate.revision,
                           alpha=alpha, n_resamples=n_resamples, seed=seed, tests=tests, rows=rows)


def pair_trained_with_bases(models: list[ModelResults], base_identity: dict[str, str | None]) -> tuple[list[tuple[ModelResults, ModelResults]], list[str]]:
    """(base, trained) for every trained model whose base the run also evaluated, and notes on the rest.

    The base is the run's model named as the trained model's ``trained_from`` (a matrix entry, or a
    model reference). ``base_identity`` maps a train step to the content identity its manifest
    records for the base; where known, the base must have exactly that identity, so a base entry
    re-pointed at other weights after training is not mistaken for the model it started from.
    """
    pairs: list[tuple[ModelResults, ModelResults]] = []
    notes: list[str] = []
    for trained in models:
        if not trained.trained_from or trained.train_step is None:
            continue
        hits = [m for m in models if m is not trained and m.name == trained.trained_from] or \
               [m for m in models if m is not trained and m.reference == trained.trained_from]
        identity = base_identity.get(trained.train_step)
        if identity is not None:  # a result without a content identity (older harness) is not ruled out
            hits = [m for m in hits if m.content in (identity, None)]
        if len(hits) == 1:
            pairs.append((hits[0], trained))
        elif not hits:
            notes.append(f"{trained.name}@{trained.revision}: its base {trained.trained_from!r} was not evaluated in "
                         "this run (or with other weights): no trained-vs-base comparison")
        else:
            notes.append(f"{trained.name}@{trained.revision}: {len(hits)} evaluated models match its base "
                         f"{trained.trained_from!r}; compare one with --compare")
    return pairs, notes
