"""Readers for local copies of evaluation data, in the layouts of ``../shared/data``.

mteb 2.x only loads data from the hub. These readers fill an mteb task's ``dataset`` attribute
in the exact shape its own loader would, so metadata, splits, main score and the evaluator stay
mteb's: only where the bytes come from changes. Every malformed line (bad JSON, a missing field, a
field of the wrong type, a blank text, a duplicate id; see :mod:`harness.evaluation.data_rows`) raises an
:class:`InputError` naming the file and line, because a silently skipped qrels line changes a
score without anyone noticing.

Layouts (one sub-folder per hf_subset for multilingual tasks):
- Retrieval/Reranking (BEIR): ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``, ``qrels/<split>.tsv``
- STS: ``<split>.jsonl[.gz]`` with ``sentence1``, ``sentence2``, ``score``
- Classification: ``<split>.jsonl[.gz]`` with ``text``, ``label`` (plus the train split)
- BitextMining: ``<xxx>-<yyy>.jsonl[.gz]`` with ``src`` (non-English side) and ``tgt``; test split
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.evaluation.data_rows import BitextRow, ClassificationRow, CorpusRow, QueryRow, STSRow, describe_fields, field_kind
from harness.errors import InputError
from inputio import field_problem, iter_json_objects

RowT = TypeVar("RowT", bound=BaseModel)

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


def find_file(folder: Path, stem: str) -> Path | None:
    """``stem.jsonl`` or ``stem.jsonl.gz`` inside ``folder``, whichever exists."""
    for suffix in JSONL_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _line_error(path: Path, line: int | None, problem: str, fix: str) -> InputError:
    return InputError(path, f"line {line}" if line is not None else None, problem, fix)


def iter_jsonl(path: Path, row_model: type[RowT]) -> Iterator[tuple[int, RowT]]:
    """Yield ``(line number, row)`` for each non-empty line, each checked against ``row_model``."""
    for lineno, raw in iter_json_objects(path, _line_error):
        try:
            row = row_model.model_validate(raw)
        except ValidationError as exc:
            raise _row_error(path, lineno, exc, row_model) from None
        yield lineno, row


def _row_error(path: Path, lineno: int, exc: ValidationError, row_model: type[BaseModel]) -> InputError:
    fp = field_problem(exc, loc_depth=1)  # a union's branch ("label.int") is not the user's field
    field = fp.field or "<line>"
    if fp.kind == "missing":
        problem = f"field {field!r} is missing"
    else:
        shown = "null" if fp.input is None else json.dumps(fp.input, ensure_ascii=False)[:60]
        why = fp.message if fp.kind in ("value_error", "string_too_short") else f"expected {field_kind(row_model, field)}"  # type: ignore[arg-type]
        problem = f"field {field!r} is {shown}: {why}"
    return InputError(path, f"line {lineno}", fp.and_more(problem), f"every line needs {describe_fields(row_model)}")  # type: ignore[arg-type]


def read_qrels(path: Path) -> tuple[dict[str, dict[str, int]], dict[tuple[str, str], int]]:
    """BEIR qrels: a ``query-id\tcorpus-id\tscore`` header, then one judgement per line.

    Returns the judgements and, for each, its line number (so later checks against the corpus
    can name the line). Scores must be integers; a pair judged twice is an error, since which
    judgement counts would otherwise depend on line order.
    """
    qrels: dict[str, dict[str, int]] = {}
    lines: dict[tuple[str, str], int] = {}
    fix = "write 'query-id<TAB>corpus-id<TAB>score' (integer score)"
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            cols = line.split("\t")
            if lineno == 1 and cols[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            if len(cols) != 3:
                raise InputError(path, f"line {lineno}", f"expected 3 tab-separated columns, found {len(cols)}: {line[:80]!r}", fix)
            qid, did, score = (c.strip() for c in cols)
            if not qid or not did:
                raise InputError(path, f"line {lineno}", "empty query-id or corpus-id", fix)
            try:
                value = float(score)
                if not value.is_integer():
                    raise ValueError(score)
            except ValueError:
                raise InputError(path, f"line {lineno}", f"score {score!r} is not an integer", "use an integer relevance score") from None
            if (qid, did) in lines:
                raise InputError(path, f"line {lineno}", f"judges ({qid}, {did}) again (first on line {lines[(qid, did)]})",
                                 "keep one judgement per query and document")
            lines[(qid, did)] = lineno
            qrels.setdefault(qid, {})[did] = int(value)
    if not qrels:
        raise InputError(path, None, "no judgements", "add at least one 'query-id<TAB>corpus-id<TAB>score' line")
    return qrels, lines


def _unique_ids(path: Path, rows: Iterator[tuple[int, Any]]) -> dict[str, tuple[int, Any]]:
    """``id -> (line, row)``; a repeated id is an error (which text would a judgement point to?)."""
    seen: dict[str, tuple[int, Any]] = {}
    for lineno, row in rows:
        key = str(row.id)
        if key in seen:
            raise InputError(path, f"line {lineno}", f"_id {key!r} repeats line {seen[key][0]}",
                             "give every line a unique _id (remove the duplicate)")
        seen[key] = (lineno, row)
    return seen


def read_retrieval_split(folder: Path, split: str, drop_unknown_qrels: bool = False) -> tuple[dict[str, Any], int]:
    """One BEIR folder and split -> (mteb's ``RetrievalSplitData``, number of qrels lines dropped).

    A judgement naming a document absent from the corpus (or a query absent from the queries
    file) cannot be retrieved, so it silently lowers every model's score (nDCG 1.000 -> 0.952 on
    the smoke set for one such line). It is an error unless the task opts in with
    ``unknown_qrels: drop``; then those lines are dropped and their count is reported.
    """
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
    qrels, qrel_lines = read_qrels(qrels_path)

    corpus = _unique_ids(corpus_path, iter_jsonl(corpus_path, CorpusRow))
    if not corpus:
        raise InputError(corpus_path, None, "the corpus is empty", "add documents as {\"_id\", \"title\", \"text\"} lines")
    queries = _unique_ids(queries_path, iter_jsonl(queries_path, QueryRow))

    unknown = [(line, qid, did) for (qid, did), line in qrel_lines.items() if did not in corpus or qid not in queries]
    if unknown and not drop_unknown_qrels:
        line, qid, did = min(unknown)
        what = f"document {did!r} is not in {corpus_path.name}" if did not in corpus else f"query {qid!r} is not in {queries_path.name}"
        raise InputError(qrels_path, f"line {line}", f"{what} ({len(unknown)} such line(s) in this file)",
                         "fix the ids, use the corpus/queries these qrels belong to, or set 'unknown_qrels: drop' on "
                         "this task in the matrix to drop them (the count is reported)")
    for _line, qid, did in unknown:
        del qrels[qid][did]
        if not qrels[qid]:
            del qrels[qid]
    if not qrels:
        raise InputError(qrels_path, None, "no judgement is left after dropping those outside the corpus/queries",
                         "use the corpus and queries these qrels belong to")

    q_ids = [qid for qid in queries if qid in qrels]  # only the split's queries: never encode another split's
    return {
        "corpus": Dataset.from_dict({"id": list(corpus), "title": [r.title or "" for _, r in corpus.values()],
                                     "text": [r.text for _, r in corpus.values()]}),
        "queries": Dataset.from_dict({"id": q_ids, "text": [queries[q][1].text for q in q_ids]}),
        "relevant_docs": qrels,
        "top_ranked": None,
    }, len(unknown)


def read_rows(folder: Path, split: str, row_model: type[RowT]) -> list[RowT]:
    path = find_file(folder, split)
    if path is None:
        raise InputError(folder / f"{split}.jsonl", None, "split file not found", f"provide {split}.jsonl (or .jsonl.gz) in {folder}")
    rows = [row for _, row in iter_jsonl(path, row_model)]
    if not rows:
        raise InputError(path, None, "the file is empty", f"add rows with fields {describe_fields(row_model)}")  # type: ignore[arg-type]
    return rows


def read_sts_split(folder: Path, split: str) -> Any:
    from datasets import Dataset

    rows = read_rows(folder, split, STSRow)
    return Dataset.from_dict(
        {
            "sentence1": [r.sentence1 for r in rows],
            "sentence2": [r.sentence2 for r in rows],
            "score": [float(r.score) for r in rows],
        }
    )


def read_classification_split(folder: Path, split: str) -> Any:
    from datasets import Dataset

    rows = read_rows(folder, split, ClassificationRow)
    path = find_file(folder, split)
    kinds = {type(r.label) for r in rows}
    if len(kinds) > 1:
        first = next(i for i, r in enumerate(rows) if type(r.label) is not type(rows[0].label))
        raise InputError(path, "label", f"mixes integer and string labels (row {first + 1} differs from row 1)",
                         "use one label type throughout the file")
    return Dataset.from_dict({"text": [r.text for r in rows], "label": [r.label for r in rows]})


def read_bitext_file(path: Path) -> Any:
    """``src`` is the non-English side and becomes ``sentence1``, as in mteb's Tatoeba."""
    from datasets import Dataset

    rows = [row for _, row in iter_jsonl(path, BitextRow)]
    if not rows:
        raise InputError(path, None, "the file is empty", "add aligned {\"src\", \"tgt\"} lines")
    return Dataset.from_dict({"sentence1": [r.src for r in rows], "sentence2": [r.tgt for r in rows]})


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
