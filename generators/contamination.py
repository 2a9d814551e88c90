"""Eval-set contamination: exact copies, near copies and embedded eval text, by n-gram containment.

The E5 paper drops generated text that equals an eval string; a passage copied with one sentence
changed, or an eval query pasted into a longer document, passes that test. Here every eval string of
at least `MIN_TOKENS` tokens is indexed by the hashes of its token 5-grams (`NGRAM`), and a
generated field is compared with each eval string it shares a 5-gram with:

- exact: equal after case and all spacing are ignored (the paper's test; any length);
- near_duplicate: >= `THRESHOLD` of the eval string's 5-grams are in the field AND >= `THRESHOLD`
  of the field's 5-grams are in the eval string (a copy with edits);
- contains_eval_text: >= `THRESHOLD` of the eval string's 5-grams are in a longer field (an eval
  query or passage embedded in it);
- copied_from_eval_text: >= `THRESHOLD` of the field's 5-grams come from one longer eval string (an
  excerpt of an eval passage).

Why containment and not MinHash LSH (datasketch): LSH estimates Jaccard similarity, which is small
when a 12-word query sits inside a 300-word document, so it cannot see embedding; datasketch's LSH
Ensemble measures containment of the *query* set in indexed sets, the other direction. Exact
5-gram containment sees both directions, has no sampling error, and on SciFact + all XQuAD languages
builds in about a second (figures in docs/generators.md).

Tokens are words (letters and digits) in spaced scripts and single characters in Chinese, Japanese
and Thai, which are written without spaces, so the same rule works across XQuAD's languages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generators.errors import GeneratorInputError
from inputio import iter_json_objects

NGRAM = 5
MIN_TOKENS = 8  # shorter eval strings (titles, labels) are matched exactly only: a 5-gram is too common
THRESHOLD = 0.5

EXACT = "exact"
NEAR_DUPLICATE = "near_duplicate"
CONTAINS_EVAL_TEXT = "contains_eval_text"
COPIED_FROM_EVAL_TEXT = "copied_from_eval_text"

_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"[\u0E00-\u0E7F\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]|[^\W_]+")
_TEXT_KEYS = ("text", "title", "sentence1", "sentence2", "src", "tgt", "query")


def squash(text: str) -> str:
    """Exact-match key: case and all spacing ignored, as in the paper's string match."""
    return _WS.sub("", unicodedata.normalize("NFKC", text).casefold())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(toks: list[str], n: int = NGRAM) -> np.ndarray:
    """Unique hashes of the token n-grams (in-process hashes: the index is never written to disk)."""
    if len(toks) < n:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.fromiter((hash(" ".join(toks[i:i + n])) for i in range(len(toks) - n + 1)), dtype=np.int64))


def _line_error(path: Path, line: int | None, problem: str, fix: str) -> GeneratorInputError:
    return GeneratorInputError(path, None, problem, fix, line=line)


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, object) for every non-blank line; a malformed line is an input error, never skipped."""
    return iter_json_objects(path, _line_error, context=" in an eval file given for contamination",
                             fix="repair or delete the line, or remove this path from filters.contamination "
                                 "(each line must be one JSON object: BEIR corpus/queries, STS or bitext rows)")


def eval_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for root in paths:
        root = Path(root)
        files += [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".jsonl") or p.name.endswith(".jsonl.gz"))
        )
    return files


def eval_strings(paths: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(text, "file:line") for every query/document/sentence in local eval data."""
    for f in eval_files(paths):
        for n, obj in _read_jsonl(f):
            for k in _TEXT_KEYS:
                v = obj.get(k)
                if isinstance(v, str) and v.strip():
                    yield v, f"{f}:{n}"


@dataclass(frozen=True)
class ContaminationHit:
    field: str
    reason: str
    source: str  # file:line of the eval string matched


class ContaminationFilter:
    """Rejects generated fields that copy, nearly copy, embed or excerpt an eval-set string."""

    def __init__(self, paths: Iterable[Path], threshold: float = THRESHOLD) -> None:
        self.paths = [Path(p) for p in paths]
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        hashes: list[np.ndarray] = []
        ids: list[np.ndarray] = []
        sizes: list[int] = []
        self._sources: list[str] = []
        for text, source in eval_strings(self.paths):
            key = squash(text)
            if not key or key in self._exact:
                continue  # XQuAD repeats each context for every question: index it once
            self._exact[key] = source
            toks = tokens(text)
            if len(toks) < MIN_TOKENS:
                continue
            h = shingles(toks)
            hashes.append(h)
            ids.append(np.full(len(h), len(sizes), dtype=np.int32))
            sizes.append(len(h))
            self._sources.append(source)
        all_h = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.int64)
        all_i = np.concatenate(ids) if ids else np.empty(0, dtype=np.int32)
        order = np.argsort(all_h, kind="stable")
        self._hashes = all_h[order]
        self._ids = all_i[order]
        self._sizes = np.asarray(sizes, dtype=np.int64)

    def __len__(self) -> int:
        """Distinct eval strings (after the exact-match normalization)."""
        return len(self._exact)

    @property
    def indexed(self) -> int:
        """Eval strings long enough for the n-gram index."""
        return len(self._sizes)

    def check(self, text: str) -> tuple[str, str] | None:
        """(reason, eval source) for a contaminated text, else None."""
        if not text:
            return None
        src = self._exact.get(squash(text))
        if src is not None:
            return EXACT, src
        q = shingles(tokens(text))
        if not len(q) or not len(self._hashes):
            return None
        lo = np.searchsorted(self._hashes, q, "left")
        hi = np.searchsorted(self._hashes, q, "right")
        present = hi > lo
        if not present.any():
            return None
        hit_ids = np.concatenate([self._ids[a:b] for a, b in zip(lo[present], hi[present])])
        ids, shared = np.unique(hit_ids, return_counts=True)
        of_eval = shared / self._sizes[ids]
        of_text = shared / len(q) if len(q) >= MIN_TOKENS - NGRAM + 1 else np.zeros(len(ids))
        best = int(np.argmax(np.maximum(of_eval, of_text)))
        e, t = float(of_eval[best]), float(of_text[best])
        if e >= self.threshold and t >= self.threshold:
            return NEAR_DUPLICATE, self._sources[ids[best]]
        if e >= self.threshold:
            return CONTAINS_EVAL_TEXT, self._sources[ids[best]]
        if t >= self.threshold:
            return COPIED_FROM_EVAL_TEXT, self._sources[ids[best]]
        return None

    def match(self, fields: Mapping[str, str]) -> ContaminationHit | None:
        """The first contaminated field (in the order given), if any."""
        for name, text in fields.items():
            found = self.check(text)
            if found is not None:
                return ContaminationHit(name, found[0], found[1])
        return None

    def is_contaminated(self, *texts: str) -> bool:
        return any(self.check(t) is not None for t in texts if t)
