"""Output hygiene after parsing: right language, no duplicates, nothing copied from an eval set.

Each filter answers keep-or-reject with a reason, and the manifest counts every reason, so a job's
yield and its losses are both visible.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

LANGUAGE_MISMATCH = "language_mismatch"
DUPLICATE = "duplicate"
CONTAMINATED = "contaminated"

_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Dedup key: Unicode NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def squash(text: str) -> str:
    """Contamination key: case and all spacing ignored, as in the paper's string match."""
    return _WS.sub("", unicodedata.normalize("NFKC", text).casefold())


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


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for line in fh:
            line = line.strip()
            if line:
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    yield obj


_TEXT_KEYS = ("text", "title", "sentence1", "sentence2", "src", "tgt", "query")


def eval_strings(paths: Iterable[Path]) -> Iterator[str]:
    """Every query/document/sentence in local eval data: BEIR folders or any *.jsonl[.gz] under a path."""
    for root in paths:
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
        )
        for f in files:
            for obj in _read_jsonl(f):
                for k in _TEXT_KEYS:
                    v = obj.get(k)
                    if isinstance(v, str) and v.strip():
                        yield v


class ContaminationFilter:
    """Drops an example whose query or any document equals an eval-set string (case and spacing ignored)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._keys: set[str] = {squash(s) for s in eval_strings(self.paths)}
        self._keys.discard("")

    def __len__(self) -> int:
        return len(self._keys)

    def is_contaminated(self, *texts: str) -> bool:
        return any(squash(t) in self._keys for t in texts if t)
