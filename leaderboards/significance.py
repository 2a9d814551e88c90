"""Paired tests over queries: is a drop in a mean score more than query-level noise?

Both runs score the same queries, so the test works on per-query differences: a sign-flip
permutation test for the p-value (exact in spirit for paired data, no distributional assumption;
the usual choice in IR evaluation) and a percentile bootstrap for a confidence interval. Both are
seeded so that a CI verdict never flips between re-runs of the same numbers. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    baseline: dict[str, float],
    candidate: dict[str, float],
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTestResult | None:
    """Two-sided paired permutation test and bootstrap CI on queries both runs scored.

    Queries without a finite score on both sides are left out. Returns None when fewer than two
    queries remain: there is nothing to test.
    """
    shared = sorted(q for q in set(baseline) & set(candidate)
                    if math.isfinite(baseline[q]) and math.isfinite(candidate[q]))
    if len(shared) < 2:
        return None
    diffs = np.array([candidate[q] - baseline[q] for q in shared], dtype=np.float64)
    observed = float(diffs.mean())
    rng = np.random.default_rng(seed)
    n = diffs.size
    chunk = max(1, min(n_resamples, 4_000_000 // n))  # bound memory for large query sets
    extreme = 0
    boot_means: list[np.ndarray] = []
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        permuted = np.abs((signs * diffs).mean(axis=1))
        extreme += int(np.count_nonzero(permuted >= abs(observed) - 1e-12))
        idx = rng.integers(0, n, size=(size, n))
        boot_means.append(diffs[idx].mean(axis=1))
        done += size
    p_value = (extreme + 1) / (n_resamples + 1)
    boots = np.concatenate(boot_means)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(boots, [tail, 1.0 - tail])
    return PairedTestResult(n, observed, float(low), float(high), float(p_value), confidence)
