"""Output hygiene after parsing: right language, no duplicates, nothing copied from an eval set.

Each filter answers keep-or-reject with a reason, and the manifest counts every reason, so a job's
yield and its losses are both visible. Contamination lives in generators.contamination.
"""

from __future__ import annotations

import re
import unicodedata

from generators.contamination import ContaminationFilter, eval_strings, squash

__all__ = ["CONTAMINATED", "DUPLICATE", "LANGUAGE_MISMATCH", "ContaminationFilter", "Deduper", "LanguageChecker",
           "eval_strings", "normalize", "squash"]

LANGUAGE_MISMATCH = "language_mismatch"
DUPLICATE = "duplicate"
CONTAMINATED = "contaminated"

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Dedup key: Unicode NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# XLM-R code -> the identifier labels that count as that language (near-identical written standards).
_LANG_ALIASES: dict[str, set[str]] = {
    "zh": {"zh", "wuu", "yue"}, "zh_TW": {"zh", "wuu", "yue"}, "ar": {"ar", "ary", "arz"},
    "no": {"no", "nn"}, "hr": {"hr", "bs", "sr"}, "bs": {"bs", "hr", "sr"}, "sr": {"sr", "hr", "bs"},
    "ms": {"ms", "id"}, "id": {"id", "ms"}, "my_zaw": {"my"},
}


class LanguageChecker:
    """Language identification of generated text with py3langid's bundled model (offline).

    Romanized XLM-R variants (hi_rom, ...) have no label in the identifier and pass unchecked; text
    shorter than `min_chars` is too short to identify reliably and also passes unchecked. Both are
    counted in the manifest.
    """

    def __init__(self, min_chars: int = 20) -> None:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        self._ident = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)
        self.labels = set(self._ident.nb_classes)
        self.min_chars = min_chars

    def detect(self, text: str) -> str:
        return str(self._ident.classify(text)[0])

    def check(self, text: str, language: str) -> tuple[bool | None, str | None]:
        """(True/False, detected) when checked; (None, None) when it cannot be checked."""
        accepted = _LANG_ALIASES.get(language, {language})
        if not accepted & self.labels or len(text.strip()) < self.min_chars:
            return None, None
        detected = self.detect(text)
        return detected in accepted, detected


class Deduper:
    """Exact duplicates after normalization, by (query, positive): the first occurrence wins."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def is_duplicate(self, query: str, positive: str) -> bool:
        key = (normalize(query), normalize(positive))
        if key in self._seen:
            return True
        self._seen.add(key)
        return False
