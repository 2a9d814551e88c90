"""Paired tests over queries: does a drop in a mean score exceed the tolerance beyond query-level noise?

Both runs score the same queries, so the test works on per-query differences ``d = cand - base``:
a sign-flip permutation test for the p-value (no distributional assumption beyond symmetry under
the null; the usual choice in IR evaluation) and a percentile bootstrap for a confidence interval.

The gate's question is not "did anything change" (a two-sided test at Δ = 0 says yes to any real
but harmless drop of 0.2 points) but "is the drop larger than the tolerance": H0 ``mean(d) >= -tol``
against H1 ``mean(d) < -tol``, tested one-sided on the shifted differences ``d + tol`` (at the null
boundary they are centred on zero). :func:`holm_adjust` then controls the chance of *any* false
failure across the many scores of one gate (MIRACL languages, BEIR datasets). All resampling is
seeded so that a CI verdict never flips between re-runs of the same numbers. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class PairedTestResult:
    n_queries: int
    mean_delta: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float

    def significant(self, alpha: float) -> bool:
        return self.p_value < alpha


def paired_test(
    baseline: Mapping[str, float],
    candidate: Mapping[str, float],
    *,
    tolerance: float = 0.0,
    alternative: Literal["less", "two-sided"] = "less",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTestResult | None:
    """Paired permutation test of ``mean(cand - base) < -tolerance`` and a bootstrap CI of the mean difference.

    ``alternative="less"`` (the gate's test) is one-sided on ``d + tolerance``; ``"two-sided"``
    tests ``|mean(d + tolerance)| > 0``. Queries without a finite score on both sides are left
    out. Returns None when fewer than two queries remain: there is nothing to test.
    """
    return stratified_paired_test([(baseline, candidate, 1.0)], tolerance=tolerance, alternative=alternative,
                                  n_resamples=n_resamples, seed=seed, confidence=confidence)


def stratified_paired_test(
    strata: Sequence[tuple[Mapping[str, float], Mapping[str, float], float]],
    *,
    tolerance: float = 0.0,
    alternative: Literal["less", "two-sided"] = "less",
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTestResult | None:
    """:func:`paired_test` of a weighted mean of per-stratum mean differences.

    Each stratum is (baseline, candidate, weight): one score's per-query values (e.g. one language
    of a task). The statistic is ``sum_s w_s * mean_s(cand - base)`` with the weights normalised,
    which is exactly how a task average (equal weight per subset) or a category average (equal
    weight per task) is built from its scores, so the test is of the number a report shows. Under
    H0 every query's difference is symmetric around zero, so flipping each sign independently is
    exact whatever the strata sizes; the bootstrap resamples queries within each stratum. With one
    stratum this is the plain paired test, draw for draw. None when a stratum has no query scored on
    both sides or fewer than two queries remain in all.
    """
    parts: list[np.ndarray] = []
    weights: list[float] = []
    for baseline, candidate, weight in strata:
        shared = sorted(q for q in set(baseline) & set(candidate)
                        if math.isfinite(baseline[q]) and math.isfinite(candidate[q]))
        if not shared:
            return None
        parts.append(np.array([candidate[q] - baseline[q] for q in shared], dtype=np.float64))
        weights.append(float(weight))
    sizes = [p.size for p in parts]
    n = sum(sizes)
    if n < 2 or sum(weights) <= 0:
        return None
    diffs = np.concatenate(parts)
    # per-query weights; None = plain mean (one stratum), kept as .mean() so the gate's numbers never move
    w = None if len(parts) == 1 else np.concatenate([np.full(k, wt / sum(weights) / k) for k, wt in zip(sizes, weights)])

    def stat(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=-1) if w is None else x @ w

    shifted = diffs + tolerance
    observed = float(stat(diffs))
    observed_shifted = float(stat(shifted))
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0] + sizes[:-1])
    chunk = max(1, min(n_resamples, 4_000_000 // n))  # bound memory for large query sets
    extreme = 0
    boot_means: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        permuted = stat(signs * shifted)
        if alternative == "less":
            extreme += int(np.count_nonzero(permuted <= observed_shifted + 1e-12))
        else:
            extreme += int(np.count_nonzero(np.abs(permuted) >= abs(observed_shifted) - 1e-12))
        idx = np.concatenate([rng.integers(0, k, size=(size, k)) + off for k, off in zip(sizes, offsets)], axis=1)
        boot_means.append(stat(diffs[idx]))
        done += size
    p_value = (extreme + 1) / (n_resamples + 1)
    boots = np.concatenate(boot_means)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boots, [tail, 1.0 - tail])
    return PairedTestResult(n, observed, float(low), float(high), float(p_value), confidence)


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: reject where adjusted < alpha keeps P(any false rejection) <= alpha.

    Valid under any dependence between the tests (the scores of one gate share a model and often
    queries' topics), unlike Benjamini-Hochberg's FDR, and a gate fails on *any* regression, so the
    family-wise error is the rate that matters.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
