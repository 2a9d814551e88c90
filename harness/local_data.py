"""Readers for local copies of evaluation data, in the layouts of ``../shared/data``.

mteb 2.x only loads data from the hub. These readers fill an mteb task's ``dataset`` attribute
in the exact shape its own loader would, so metadata, splits, main score and the evaluator stay
mteb's: only where the bytes come from changes. Every malformed line raises an
:class:`InputError` naming the file and line, because a silently skipped qrels line changes a
score without anyone noticing.

Layouts (one sub-folder per hf_subset for multilingual tasks):
- Retrieval/Reranking (BEIR): ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``
- STS: ``<split>.jsonl[.gz]`` with ``sentence1``, ``sentence2``, ``score``
- Classification: ``<split>.jsonl[.gz]`` with ``text``, ``label`` (plus the train split)
- BitextMining: ``<xxx>-<yyy>.jsonl[.gz]`` with ``src`` (non-English side) and ``tgt``; test split
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def find_file(folder: Path, stem: str) -> Path | None:
    """``stem.jsonl`` or ``stem.jsonl.gz`` inside ``folder``, whichever exists."""
    for suffix in JSONL_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path) -> Any:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_jsonl(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Yield JSON objects, one per non-empty line, checking that ``required`` keys are present."""
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(path, f"line {lineno}", f"not valid JSON ({exc.msg})", "write one JSON object per line") from None
                if not isinstance(row, dict):
                    raise InputError(path, f"line {lineno}", "not a JSON object", "write one JSON object per line")
                missing = [k for k in required if k not in row]
                if missing:
                    raise InputError(
                        path, f"line {lineno}", f"missing field(s) {', '.join(missing)}", f"every line needs {', '.join(required)}"
                    )
                yield row
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"cannot be read ({exc})", "replace it with a readable UTF-8 (optionally gzip) JSONL file") from None


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels: a ``query-id\\tcorpus-id\\tscore`` header, then one judgement per line."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if lineno == 1 and cols[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            if len(cols) != 3:
                raise InputError(
                    path, f"line {lineno}", f"expected 3 tab-separated columns, found {len(cols)}: {line[:80]!r}",
                    "write 'query-id<TAB>corpus-id<TAB>score' (integer score)",
                )
            qid, did, score = (c.strip() for c in cols)
            try:
                value = int(float(score))
            except ValueError:
                raise InputError(path, f"line {lineno}", f"score {score!r} is not a number", "use an integer relevance score") from None
            qrels.setdefault(qid, {})[did] = value
    if not qrels:
        raise InputError(path, None, "no judgements", "add at least one 'query-id<TAB>corpus-id<TAB>score' line")
    return qrels


def read_retrieval_split(folder: Path, split: str) -> dict[str, Any]:
    """One BEIR folder and split -> mteb's ``RetrievalSplitData`` (corpus, queries, relevant_docs)."""
    from datasets import Dataset

    corpus_path = find_file(folder, "corpus")
    queries_path = find_file(folder, "queries")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for label, p, expected in (
        ("corpus", corpus_path, folder / "corpus.jsonl"),
        ("queries", queries_path, folder / "queries.jsonl"),
        ("qrels", qrels_path if qrels_path.is_file() else None, qrels_path),
    ):
        if p is None:
            raise InputError(expected, None, f"{label} file not found", f"provide {expected.name} in the BEIR layout")
    assert corpus_path is not None and queries_path is not None
    qrels = read_qrels(qrels_path)

    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    for row in iter_jsonl(corpus_path, ("_id", "text")):
        ids.append(str(row["_id"]))
        titles.append(str(row.get("title") or ""))
        texts.append(str(row["text"] or ""))
    if not ids:
        raise InputError(corpus_path, None, "the corpus is empty", "add documents as {\"_id\", \"title\", \"text\"} lines")

    q_ids: list[str] = []
    q_texts: list[str] = []
    for row in iter_jsonl(queries_path, ("_id", "text")):
        qid = str(row["_id"])
        if qid in qrels:  # only the split's queries: never encode another split's queries
            q_ids.append(qid)
            q_texts.append(str(row["text"]))
    if not q_ids:
        raise InputError(queries_path, None, f"no query of qrels/{split}.tsv is in this file", "use the queries file that belongs to these qrels")

    return {
        "corpus": Dataset.from_dict({"id": ids, "title": titles, "text": texts}),
        "queries": Dataset.from_dict({"id": q_ids, "text": q_texts}),
        "relevant_docs": qrels,
        "top_ranked": None,
    }


def read_rows(folder: Path, split: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    path = find_file(folder, split)
    if path is None:
        raise InputError(folder / f"{split}.jsonl", None, "split file not found", f"provide {split}.jsonl (or .jsonl.gz) in {folder}")
    rows = list(iter_jsonl(path, required))
    if not rows:
        raise InputError(path, None, "the file is empty", f"add rows with fields {', '.join(required)}")
    return rows


def read_sts_split(folder: Path, split: str) -> Any:
    from datasets import Dataset

    rows = read_rows(folder, split, ("sentence1", "sentence2", "score"))
    return Dataset.from_dict(
        {
            "sentence1": [str(r["sentence1"]) for r in rows],
            "sentence2": [str(r["sentence2"]) for r in rows],
            "score": [float(r["score"]) for r in rows],
        }
    )


def read_classification_split(folder: Path, split: str) -> Any:
    from datasets import Dataset

    rows = read_rows(folder, split, ("text", "label"))
    return Dataset.from_dict({"text": [str(r["text"]) for r in rows], "label": [r["label"] for r in rows]})


def read_bitext_file(path: Path) -> Any:
    """``src`` is the non-English side and becomes ``sentence1``, as in mteb's Tatoeba."""
    from datasets import Dataset

    rows = list(iter_jsonl(path, ("src", "tgt")))
    if not rows:
        raise InputError(path, None, "the file is empty", "add aligned {\"src\", \"tgt\"} lines")
    return Dataset.from_dict({"sentence1": [str(r["src"]) for r in rows], "sentence2": [str(r["tgt"]) for r in rows]})


def bitext_subsets(folder: Path) -> dict[str, Path]:
    """``deu-eng.jsonl`` -> ``{"deu-eng": path}``."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        for suffix in JSONL_SUFFIXES:
            if p.is_file() and p.name.endswith(suffix) and "-" in p.name[: -len(suffix)]:
                found[p.name[: -len(suffix)]] = p
    return found


def subset_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name not in {"qrels", "original"})


def available_splits(folder: Path, task_type: str) -> set[str]:
    """Which splits a folder (one subset) holds, so unselected splits are not demanded."""
    if task_type in {"Retrieval", "Reranking"}:
        qrels = folder / "qrels"
        return {p.stem for p in qrels.glob("*.tsv")} if qrels.is_dir() else set()
    names = set()
    for p in folder.iterdir():
        for suffix in JSONL_SUFFIXES:
            if p.is_file() and p.name.endswith(suffix):
                names.add(p.name[: -len(suffix)])
    return names
