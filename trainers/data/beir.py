"""A BEIR-layout folder's training split (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv) with mined negatives.

One example per (query, positive) qrel with score > 0; negatives are mined per query with the
caller's embedder (see ``trainers.data.mining``). Documents are joined the way mteb 2.x builds a
corpus text (``mteb._create_dataloaders._corpus_to_dict``): ``(title + " " + text).strip()`` when the
title is non-empty, else ``text.strip()`` — so the trainer sees documents exactly as evaluation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inputio import open_text
from trainers.data.jsonl import iter_jsonl, require_file
from trainers.data.mining import Encoder, mine_hard_negatives
from trainers.errors import TrainInputError
from trainers.examples import TrainExample


@dataclass(frozen=True)
class Qrel:
    query_id: str
    doc_id: str
    score: int
    line: int


@dataclass(frozen=True)
class BeirSplit:
    """A split read and cross-checked: every qrel names a query and a document that exist."""

    corpus: dict[str, str]   # doc id -> joined "title text"
    queries: dict[str, str]  # query id -> text
    qrels: list[Qrel]
    qrels_path: Path


def document_text(title: str | None, text: str) -> str:
    """Title and body joined as mteb does for retrieval corpora."""
    if title:
        return (title + " " + text).strip()
    return text.strip()


def _corpus_path(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise TrainInputError(
        folder / "corpus.jsonl", None, "corpus not found (neither corpus.jsonl nor corpus.jsonl.gz)",
        "point `path` at a BEIR-layout folder: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv",
    )


def _id(obj: dict, path: Path, line: int) -> str:
    value = obj.get("_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise TrainInputError(path, "_id", "missing or not a string/integer id", "give every row a non-empty '_id'", line=line)
    return str(value)


def _text(obj: dict, key: str, path: Path, line: int, required: bool) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise TrainInputError(path, key, "missing or not a string", f"give every row a string '{key}'", line=line)
    return value


def split_files(folder: Path, split: str = "train") -> tuple[Path, Path, Path]:
    """(corpus, queries, qrels) of one split: every file the split is read from (and its identity hashes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TrainInputError(folder, None, "BEIR folder not found", "point `path` at a folder with corpus.jsonl[.gz], queries.jsonl and qrels/")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise TrainInputError(qrels_path, "split", f"no qrels for split {split!r} (found: {have or 'none'})",
                              f"set `split` to one of {have}" if have else "add qrels/<split>.tsv")
    corpus_path = _corpus_path(folder)
    queries_path = require_file(folder / "queries.jsonl", "queries.jsonl", "add queries.jsonl ({\"_id\", \"text\"} per line)")
    return corpus_path, queries_path, qrels_path


def read_beir_split(folder: Path, split: str = "train") -> BeirSplit:
    """Read and validate one split; errors name the file, the 1-based line and the field."""
    corpus_path, queries_path, qrels_path = split_files(folder, split)

    corpus: dict[str, str] = {}
    doc_line: dict[str, int] = {}
    for line, obj in iter_jsonl(corpus_path):
        doc_id = _id(obj, corpus_path, line)
        corpus[doc_id] = document_text(_text(obj, "title", corpus_path, line, False), _text(obj, "text", corpus_path, line, True))
        doc_line[doc_id] = line
    queries: dict[str, str] = {}
    query_line: dict[str, int] = {}
    for line, obj in iter_jsonl(queries_path):
        query_id = _id(obj, queries_path, line)
        queries[query_id] = _text(obj, "text", queries_path, line, True)
        query_line[query_id] = line

    qrels: list[Qrel] = []
    with open_text(qrels_path) as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            parts = raw.rstrip("\n").split("\t")
            if line == 1 and parts[0] == "query-id":
                continue
            if len(parts) != 3:
                raise TrainInputError(qrels_path, None, f"expected 3 tab-separated columns, got {len(parts)}",
                                      "write 'query-id<TAB>corpus-id<TAB>score' per line", line=line)
            qid, did, score_s = parts
            try:
                score = int(score_s)
            except ValueError:
                raise TrainInputError(qrels_path, "score", f"not an integer: {score_s!r}",
                                      "write an integer relevance score (e.g. 1)", line=line) from None
            if qid not in queries:
                raise TrainInputError(qrels_path, "query-id", f"query {qid!r} is not in {queries_path.name}",
                                      f"add the query to {queries_path.name} or remove this qrel", line=line)
            if did not in corpus:
                raise TrainInputError(qrels_path, "corpus-id", f"document {did!r} is not in {corpus_path.name}",
                                      f"add the document to {corpus_path.name} or remove this qrel", line=line)
            if score > 0:  # a training example: its texts must be real text (blank ones would train on nothing)
                if not queries[qid].strip():
                    raise TrainInputError(queries_path, "text", f"query {qid!r} (used by {qrels_path.name} line {line}) is blank",
                                          "give the query its text, or remove its qrels", line=query_line[qid])
                if not corpus[did].strip():
                    raise TrainInputError(corpus_path, "text", f"document {did!r} (a positive in {qrels_path.name} line {line}) "
                                          "has a blank title and text", "give the document its text, or remove its qrels",
                                          line=doc_line[did])
            qrels.append(Qrel(qid, did, score, line))
    return BeirSplit(corpus, queries, qrels, qrels_path)


def load_beir(
    folder: Path,
    *,
    encode: Encoder | None,
    split: str = "train",
    source: str | None = None,
    instruction: str | None = None,
    negatives_per_query: int = 1,
    mine_skip_top: int = 3,
    mine_depth: int = 30,
    seed: int = 0,
    max_examples: int | None = None,
) -> list[TrainExample]:
    """Examples for every positive qrel (the first ``max_examples`` in file order), negatives mined.

    All positives of a query (score > 0) are excluded from its negatives, not only the example's
    own. The whole corpus is searched; only the queries that produce examples are encoded.
    """
    folder = Path(folder)
    data = read_beir_split(folder, split)
    pos_qrels = [q for q in data.qrels if q.score > 0]
    if max_examples is not None:
        pos_qrels = pos_qrels[:max_examples]
    if not pos_qrels:
        raise TrainInputError(data.qrels_path, "score", "no qrel with score > 0", "a training split needs positive qrels")
    if negatives_per_query > 0 and encode is None:
        raise TrainInputError(folder, "negatives_per_query",
                              "mining hard negatives needs an embedder, and none was given",
                              "pass `encode` to build_mixture (or load a saved mixture file), or set negatives_per_query: 0")
    doc_ids = list(data.corpus)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    # a blank document is never a negative (it would teach nothing): excluded like a positive
    blank = {i for i, d in enumerate(doc_ids) if not data.corpus[d].strip()}
    all_pos: dict[str, set[int]] = {}
    for q in data.qrels:
        if q.score > 0:
            all_pos.setdefault(q.query_id, set()).add(doc_index[q.doc_id])
    for excluded in all_pos.values():
        excluded |= blank
    qids = list(dict.fromkeys(q.query_id for q in pos_qrels))
    if negatives_per_query > 0:
        assert encode is not None
        mined = mine_hard_negatives(
            [data.queries[q] for q in qids], [data.corpus[d] for d in doc_ids], [all_pos[q] for q in qids],
            encode, negatives_per_query=negatives_per_query, skip_top=mine_skip_top, depth=mine_depth, seed=seed,
            instruction=instruction or "",
        )
    else:
        mined = [[] for _ in qids]
    negs_of = {qid: tuple(data.corpus[doc_ids[j]] for j in idx) for qid, idx in zip(qids, mined)}
    name = source or folder.name
    return [
        TrainExample(
            query=data.queries[q.query_id],
            positive=data.corpus[q.doc_id],
            negatives=negs_of[q.query_id],
            instruction=instruction or "",
            source=name,
        )
        for q in pos_qrels
    ]
