"""Regression gate: compare a candidate's main scores with a baseline's, score by score.

Decisions (documented in docs/leaderboards.md):
- The unit is one main score per (task, split, subset); a drop larger than the allowed tolerance
  (absolute, MTEB's 0-1 scale) is a regression.
- Against a results directory every baseline score must exist in the candidate; a missing one is a
  regression unless ``allow_missing`` matches it. Against a shipped reference model (hundreds of
  tasks) only the scores the candidate has are compared, and ``require_tasks`` names tasks that must
  be present. Scores only the candidate has are listed, never failed.
- Where both sides kept per-query scores, a drop beyond tolerance must also be significant: a
  one-sided paired test over queries of "the drop exceeds the tolerance" (H0: mean drop <= tolerance),
  with Holm's correction over every score of the gate that has per-query scores on both sides, so the
  chance of failing a good candidate anywhere is at most alpha. Otherwise it is reported as
  "not significant" and does not fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel

from leaderboards.errors import LeaderboardInputError
from leaderboards.per_query import per_query_scores
from leaderboards.scores import ModelResults, ScoreKey
from leaderboards.significance import holm_adjust, paired_test

Status = Literal["regressed", "nan", "missing", "not_significant", "missing_allowed", "ok", "improved", "new"]
FAILING: frozenset[str] = frozenset({"regressed", "nan", "missing"})


@dataclass(frozen=True)
class GatePolicy:
    max_drop: float = 0.01
    per_task: dict[str, float] = field(default_factory=dict)
    allow_missing: tuple[str, ...] = ()
    require_tasks: tuple[str, ...] = ()
    alpha: float = 0.05
    n_resamples: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value in [("max_drop", self.max_drop)] + [(f"per_task[{k}]", v) for k, v in self.per_task.items()]:
            if not 0.0 <= value < 1.0:
                raise LeaderboardInputError(
                    None, name, f"{value} is outside [0, 1)",
                    "tolerances are on MTEB's 0-1 scale: 0.01 allows a drop of one leaderboard point",
                )
        if not 0.0 < self.alpha < 1.0:
            raise LeaderboardInputError(None, "alpha", f"{self.alpha} is outside (0, 1)", "use e.g. 0.05")
        if self.n_resamples < 100:
            raise LeaderboardInputError(None, "n_resamples", f"{self.n_resamples} is too few", "use at least 1000")

    def tolerance(self, key: ScoreKey) -> float:
        """The most specific matching override (``Task``, ``Task/subset`` or ``Task/split/subset``; globs allowed)."""
        matches = [(len(p), v) for p, v in self.per_task.items() if _matches(p, key)]
        return max(matches)[1] if matches else self.max_drop

    def missing_allowed(self, key: ScoreKey) -> bool:
        return any(_matches(p, key) for p in self.allow_missing)


def _matches(pattern: str, key: ScoreKey) -> bool:
    names = (key.task, f"{key.task}/{key.subset}", f"{key.task}/{key.split}/{key.subset}")
    return any(fnmatchcase(n, pattern) for n in names)


class PairedTestSummary(BaseModel):
    n_queries: int
    mean_delta: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float | None = None  # Holm-adjusted over the gate's tested scores; the decision uses it


class Comparison(BaseModel):
    task: str
    split: str
    subset: str
    status: Status
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    tolerance: float
    paired_test: PairedTestSummary | None = None


def compare(
    baseline: ModelResults, candidate: ModelResults, policy: GatePolicy, *, baseline_is_reference: bool
) -> list[Comparison]:
    if baseline_is_reference:
        keys = sorted((set(candidate.scores) | candidate.nan_scores) & set(baseline.scores))
        if not keys:
            raise LeaderboardInputError(
                None, "baseline", f"{baseline.name} has none of the candidate's {len(candidate.scores)} scores",
                "gate against a model evaluated on the same tasks/splits/subsets, or a results directory",
            )
    else:
        keys = sorted(baseline.scores)
    out = _decide([_compare_one(key, baseline, candidate, policy) for key in keys], policy)
    out += [Comparison(task=k.task, split=k.split, subset=k.subset, status="new", candidate=candidate.scores[k],
                       tolerance=policy.tolerance(k)) for k in sorted(set(candidate.scores) - set(baseline.scores))]
    for pattern in policy.require_tasks:
        if not any(fnmatchcase(t, pattern) for t in candidate.tasks):
            key = ScoreKey(pattern, "*", "*")
            out.append(Comparison(task=pattern, split="*", subset="*", tolerance=policy.tolerance(key),
                                  status="missing_allowed" if policy.missing_allowed(key) else "missing"))
    return out


def _decide(compared: list[tuple[Comparison, bool]], policy: GatePolicy) -> list[Comparison]:
    """Holm over the family of scores with per-query data on both sides.

    Members not beyond tolerance enter with p = 1 (their one-sided p is >= ~0.5 anyway), which
    keeps the family what it is (every tested score) without resampling them.
    """
    out = [c for c, _ in compared]
    family = [i for i, (c, testable) in enumerate(compared) if testable]
    raw = [out[i].paired_test.p_value if out[i].paired_test is not None else 1.0 for i in family]  # type: ignore[union-attr]
    for i, adj in zip(family, holm_adjust(raw)):
        c = out[i]
        if c.paired_test is None:
            continue
        status: Status = "regressed" if adj < policy.alpha else "not_significant"
        out[i] = c.model_copy(update={"status": status, "paired_test": c.paired_test.model_copy(update={"p_adjusted": adj})})
    return out


def _compare_one(key: ScoreKey, baseline: ModelResults, candidate: ModelResults,
                 policy: GatePolicy) -> tuple[Comparison, bool]:
    """One score's comparison and whether it belongs to the Holm family (per-query scores on both sides)."""
    base = baseline.scores[key]
    tol = policy.tolerance(key)
    common = dict(task=key.task, split=key.split, subset=key.subset, baseline=base, tolerance=tol)
    if key in candidate.nan_scores:  # evaluated, but mteb produced NaN: broken, not absent
        return Comparison(status="nan", candidate=float("nan"), **common), False
    if key not in candidate.scores:
        return Comparison(status="missing_allowed" if policy.missing_allowed(key) else "missing", **common), False
    cand = candidate.scores[key]
    delta = cand - base
    base_q, cand_q = per_query_scores(baseline, key), per_query_scores(candidate, key)
    testable = base_q is not None and cand_q is not None
    if delta >= -tol - 1e-12:
        return Comparison(status="improved" if delta > tol else "ok", candidate=cand, delta=delta, **common), testable
    summary = None
    if testable:
        result = paired_test(base_q, cand_q, tolerance=tol, alternative="less",  # type: ignore[arg-type]
                             n_resamples=policy.n_resamples, seed=policy.seed)
        if result is not None:
            summary = PairedTestSummary(n_queries=result.n_queries, mean_delta=result.mean_delta,
                                        ci_low=result.ci_low, ci_high=result.ci_high, p_value=result.p_value)
    # with a summary, _decide sets regressed / not_significant after Holm; without one a drop beyond tolerance fails
    return Comparison(status="regressed", candidate=cand, delta=delta, paired_test=summary, **common), summary is not None
