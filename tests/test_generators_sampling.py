"""Language and placeholder sampling follow their configured weights (chi-square over 10k draws)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy.stats import chisquare

from generators.sampling import (
    LANGUAGE_NAMES,
    XLMR_LANGUAGES,
    LanguageSampler,
    derived_rng,
    derived_seed,
    sample_placeholders,
    xlmr_weights,
)
from generators.templates import load_template

N = 10_000


def _chi2(sampler: LanguageSampler, draws: list[str]) -> float:
    counts = Counter(draws)
    observed = [counts.get(c, 0) for c in sampler.codes]
    expected = [p * len(draws) for p in sampler.probs]
    return float(chisquare(observed, expected).pvalue)


def test_configured_weights_chi_square() -> None:
    weights = {"en": 4.0, "fr": 2.0, "de": 2.0, "es": 1.0, "zh": 1.0}
    sampler = LanguageSampler(weights)
    rng = random.Random(1234)
    draws = [sampler.draw(rng) for _ in range(N)]
    p = _chi2(sampler, draws)
    print(f"configured weights: chi-square p={p:.3f}, counts={Counter(draws).most_common()}")
    assert p > 0.001
    # and a wrong hypothesis is rejected, so the test has power
    wrong = [0.2] * 5
    counts = Counter(draws)
    assert chisquare([counts[c] for c in sampler.codes], [w * N for w in wrong]).pvalue < 1e-6


def test_xlmr_weights_chi_square_and_english_most() -> None:
    sampler = LanguageSampler(xlmr_weights())
    assert len(sampler.codes) == 100 == len(XLMR_LANGUAGES)
    draws = [sampler.draw(derived_rng(7, "lang", i)) for i in range(N)]
    p = _chi2(sampler, draws)
    counts = Counter(draws)
    print(f"XLM-R weights: chi-square p={p:.3f}, top={counts.most_common(5)}")
    assert p > 0.001
    assert counts.most_common(1)[0][0] == "en"
    assert counts["en"] > 3 * max(v for k, v in counts.items() if k != "en")


def test_derived_draws_are_reproducible() -> None:
    a = [derived_rng(3, "sts", i).random() for i in range(50)]
    b = [derived_rng(3, "sts", i).random() for i in reversed(range(50))][::-1]
    assert a == b
    assert derived_seed(3, "x", 1) == derived_seed(3, "x", 1) != derived_seed(3, "x", 2)


def test_bitext_other_language_differs() -> None:
    sampler = LanguageSampler({"en": 5, "fr": 1})
    rng = random.Random(0)
    assert all(sampler.draw_other(rng, "en") == "fr" for _ in range(100))


def test_placeholders_uniform_over_declared_values() -> None:
    tpl = load_template("paper/generate_short_long")
    values = tpl.placeholders["num_words"]
    draws = [sample_placeholders(tpl, derived_rng(1, "p", i))["num_words"] for i in range(N)]
    counts = Counter(draws)
    assert set(counts) == set(values)
    assert chisquare([counts[v] for v in values]).pvalue > 0.001


def test_unknown_language_rejected() -> None:
    with pytest.raises(ValueError, match="xx"):
        LanguageSampler({"xx": 1.0})
    assert LANGUAGE_NAMES["de"] == "German"
