"""Run-time sampling of prompt placeholders and languages, reproducible per example.

Every draw comes from an RNG seeded by (job seed, task type, example index), so a re-run rebuilds the
exact same requests; that is what lets the response cache answer them instead of the LLM.
Languages come from XLM-R's 100-language list, weighted toward high-resource languages (English most).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence

from generators.templates import Template

# XLM-R's CC-100 languages (Conneau et al. 2020, Table 6): code, English name, resource tier.
# Tier weights follow the paper's "more weight to high-resource languages": the tier is set by the
# language's CC-100 size (tier 1 >= 50 GiB, tier 2 >= 5 GiB, tier 3 >= 0.5 GiB, tier 4 smaller),
# English is its own tier and gets the largest single share.
XLMR_LANGUAGES: tuple[tuple[str, str, int], ...] = (
    ("en", "English", 0), ("ru", "Russian", 1), ("id", "Indonesian", 1), ("vi", "Vietnamese", 1),
    ("fa", "Persian", 1), ("uk", "Ukrainian", 1), ("sv", "Swedish", 1), ("th", "Thai", 1),
    ("ja", "Japanese", 1), ("de", "German", 1), ("ro", "Romanian", 1), ("hu", "Hungarian", 1),
    ("bg", "Bulgarian", 1), ("fr", "French", 1), ("fi", "Finnish", 1), ("ko", "Korean", 1),
    ("es", "Spanish", 1), ("no", "Norwegian", 1), ("pt", "Portuguese", 1), ("el", "Greek", 1),
    ("zh", "Chinese (Simplified)", 1), ("da", "Danish", 1), ("pl", "Polish", 1), ("he", "Hebrew", 2),
    ("it", "Italian", 2), ("nl", "Dutch", 2), ("ar", "Arabic", 2), ("sk", "Slovak", 2),
    ("hi", "Hindi", 2), ("hr", "Croatian", 2), ("tr", "Turkish", 2), ("cs", "Czech", 2),
    ("lt", "Lithuanian", 2), ("ta", "Tamil", 2), ("ca", "Catalan", 2), ("sl", "Slovenian", 2),
    ("ka", "Georgian", 2), ("sr", "Serbian", 2), ("lv", "Latvian", 2), ("bn", "Bengali", 2),
    ("ms", "Malay", 2), ("ml", "Malayalam", 2), ("hy", "Armenian", 2), ("kk", "Kazakh", 2),
    ("mk", "Macedonian", 3), ("ur", "Urdu", 3), ("et", "Estonian", 3), ("te", "Telugu", 3),
    ("az", "Azerbaijani", 3), ("is", "Icelandic", 3), ("sq", "Albanian", 3), ("mr", "Marathi", 3),
    ("be", "Belarusian", 3), ("kn", "Kannada", 3), ("zh_TW", "Chinese (Traditional)", 3),
    ("eu", "Basque", 3), ("ne", "Nepali", 3), ("mn", "Mongolian", 3), ("si", "Sinhala", 3),
    ("la", "Latin", 3), ("gl", "Galician", 3), ("bs", "Bosnian", 3), ("af", "Afrikaans", 3),
    ("km", "Khmer", 3), ("uz", "Uzbek", 3), ("tl", "Filipino", 3), ("sw", "Swahili", 3),
    ("my", "Burmese", 3), ("gu", "Gujarati", 3), ("pa", "Punjabi", 3), ("eo", "Esperanto", 3),
    ("ky", "Kyrgyz", 3), ("cy", "Welsh", 3), ("ta_rom", "Tamil (Romanized)", 4),
    ("ps", "Pashto", 4), ("te_rom", "Telugu (Romanized)", 4), ("hi_rom", "Hindi (Romanized)", 4),
    ("ga", "Irish", 4), ("am", "Amharic", 4), ("ur_rom", "Urdu (Romanized)", 4),
    ("lo", "Lao", 4), ("ku", "Kurdish", 4), ("mg", "Malagasy", 4), ("so", "Somali", 4),
    ("fy", "Western Frisian", 4), ("jv", "Javanese", 4), ("bn_rom", "Bengali (Romanized)", 4),
    ("sa", "Sanskrit", 4), ("gd", "Scottish Gaelic", 4), ("br", "Breton", 4), ("ha", "Hausa", 4),
    ("xh", "Xhosa", 4), ("as", "Assamese", 4), ("su", "Sundanese", 4), ("yi", "Yiddish", 4),
    ("or", "Odia", 4), ("ug", "Uyghur", 4), ("sd", "Sindhi", 4), ("om", "Oromo", 4),
    ("my_zaw", "Burmese (Zawgyi)", 4),
)

LANGUAGE_NAMES: dict[str, str] = {code: name for code, name, _ in XLMR_LANGUAGES}

# Relative weight per tier; with the 100-language list English alone carries ~40% of the mass.
TIER_WEIGHTS: dict[int, float] = {0: 40.0, 1: 1.5, 2: 0.8, 3: 0.3, 4: 0.1}


def xlmr_weights() -> dict[str, float]:
    """The default language weights: XLM-R's list, tier-weighted, English heaviest."""
    return {code: TIER_WEIGHTS[tier] for code, _, tier in XLMR_LANGUAGES}


def derived_rng(seed: int, *parts: object) -> random.Random:
    """A private RNG per (seed, parts): independent of draw order, so resuming re-samples identically."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def derived_seed(seed: int, *parts: object) -> int:
    """A 31-bit request seed, stable across runs, sent to the backend and part of the cache key."""
    digest = hashlib.sha256(repr(("request", seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class LanguageSampler:
    """Draws language codes with fixed weights (normalized), e.g. XLM-R tiers or a config's mix."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        bad = [c for c in weights if c not in LANGUAGE_NAMES]
        if bad:
            raise ValueError(f"unknown language codes {bad}; use XLM-R codes such as en, fr, de, zh")
        items = [(c, float(w)) for c, w in weights.items() if w > 0]
        if not items:
            raise ValueError("language weights must have at least one positive weight")
        total = sum(w for _, w in items)
        self.codes: list[str] = [c for c, _ in items]
        self.probs: list[float] = [w / total for _, w in items]

    def draw(self, rng: random.Random) -> str:
        """One language code."""
        return rng.choices(self.codes, weights=self.probs, k=1)[0]

    def draw_other(self, rng: random.Random, exclude: str) -> str:
        """A language different from `exclude` (bitext needs two; the config check guarantees two)."""
        others = [(c, p) for c, p in zip(self.codes, self.probs) if c != exclude and p > 0]
        if not others:
            raise ValueError(f"bitext needs a second language besides {exclude!r}; configure two languages")
        return rng.choices([c for c, _ in others], weights=[p for _, p in others], k=1)[0]


def sample_placeholders(template: Template, rng: random.Random) -> dict[str, str]:
    """One value per sampled placeholder, uniformly from the template's declared set."""
    return {name: rng.choice(values) for name, values in sorted(template.placeholders.items())}


def choose(rng: random.Random, pool: Sequence[str]) -> str:
    """One task definition from a brainstormed pool."""
    return rng.choice(list(pool))
