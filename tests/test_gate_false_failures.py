"""Gate statistics (issue #7 item 6) on synthetic data whose truth is known.

A MIRACL-like gate compares 18 language subsets. When the candidate's true mean drop equals the
tolerance on every subset (the worst case the gate must still pass), the fraction of trials in
which the gate fails *anywhere* must be at most alpha; when the true drop is three times the
tolerance, the gate must catch it. The old rule (two-sided test at Δ = 0, no correction across
subsets) fails such a harmless candidate in almost every trial.
"""

from __future__ import annotations

import numpy as np
import pytest

from leaderboards import gate as gate_module
from leaderboards.gate import GatePolicy, compare
from leaderboards.scores import ModelResults, ScoreKey
from leaderboards.significance import holm_adjust, paired_test

SUBSETS = [f"lang{i:02d}" for i in range(18)]
N_QUERIES = 100
TOL = 0.01
ALPHA = 0.05


def _trial(rng: np.random.Generator, true_drop: float) -> tuple[ModelResults, ModelResults, dict]:
    base = ModelResults("base", "r1", "directory", "mem")
    cand = ModelResults("cand", "r2", "directory", "mem")
    per_query: dict[tuple[str, ScoreKey], dict[str, float]] = {}
    for lang in SUBSETS:
        key = ScoreKey("MIRACLRetrieval", "dev", lang)
        b = rng.uniform(0.2, 0.8, N_QUERIES)
        c = b - true_drop + rng.normal(0.0, 0.1, N_QUERIES)  # symmetric query-level noise
        per_query[("base", key)] = {f"q{i}": float(v) for i, v in enumerate(b)}
        per_query[("cand", key)] = {f"q{i}": float(v) for i, v in enumerate(c)}
        base.scores[key], cand.scores[key] = float(b.mean()), float(c.mean())
    return base, cand, per_query


def _failure_rate(monkeypatch: pytest.MonkeyPatch, true_drop: float, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    policy = GatePolicy(max_drop=TOL, alpha=ALPHA, n_resamples=1000)
    failed = 0
    for _ in range(trials):
        base, cand, per_query = _trial(rng, true_drop)
        monkeypatch.setattr(gate_module, "per_query_scores", lambda model, key, pq=per_query: pq[(model.name, key)])
        comparisons = compare(base, cand, policy, baseline_is_reference=False)
        failed += any(c.status == "regressed" for c in comparisons)
    return failed / trials


def test_false_failure_rate_at_the_tolerance_boundary_is_at_most_alpha(monkeypatch: pytest.MonkeyPatch) -> None:
    rate = _failure_rate(monkeypatch, true_drop=TOL, trials=300, seed=11)
    assert rate <= ALPHA, f"a candidate whose true drop equals the tolerance failed {rate:.1%} of gates"


def test_a_real_regression_beyond_tolerance_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _failure_rate(monkeypatch, true_drop=3 * TOL, trials=40, seed=12) >= 0.9


def test_one_sided_test_is_about_the_tolerance_not_about_zero() -> None:
    rng = np.random.default_rng(3)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.2, 0.8, 2000))}
    cand = {q: v - 0.012 + float(rng.normal(0, 0.02)) for q, v in base.items()}  # real, precise, small drop
    assert paired_test(base, cand, alternative="two-sided").p_value < 0.001  # "it changed": yes
    assert paired_test(base, cand, tolerance=0.02, alternative="less").p_value > 0.5  # "beyond 0.02": no
    assert paired_test(base, cand, tolerance=0.005, alternative="less").p_value < 0.001  # "beyond 0.005": yes


def test_holm_adjustment_matches_hand_computation() -> None:
    assert holm_adjust([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm_adjust([]) == []
