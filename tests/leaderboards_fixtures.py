"""Shared helpers for the leaderboards tests: tiny MTEB-layout result folders built from real numbers.

The scores are the official MTEB results of sentence-transformers/all-MiniLM-L6-v2
(embeddings-benchmark/results @ f4cc6c8b, revision 8b3219a9...), so a report built from them must
reproduce the shipped reference numbers exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MTEB_CACHE", str(Path(tempfile.gettempdir()) / "leaderboards-tests-mteb-cache"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_REVISION = "8b3219a92973c328a8e22fadcfa821b5dc75636a"

# (task, split, subset, languages, main score) — values as in the public MTEB result files.
MINILM_SCORES: list[tuple[str, str, str, list[str], float]] = [
    ("SciFact", "test", "default", ["eng-Latn"], 0.64508),
    ("STSBenchmark", "test", "default", ["eng-Latn"], 0.8203247283076371),
    ("Banking77Classification", "test", "default", ["eng-Latn"], 0.8004220779220779),
    ("XQuADRetrieval", "validation", "en", ["eng-Latn"], 0.94357),
    ("XQuADRetrieval", "validation", "de", ["deu-Latn"], 0.70324),
    ("Tatoeba", "test", "deu-eng", ["deu-Latn", "eng-Latn"], 0.07891272250150178),
]
MAIN_METRIC = {"SciFact": "ndcg_at_10", "STSBenchmark": "cosine_spearman", "Banking77Classification": "accuracy",
               "XQuADRetrieval": "ndcg_at_10", "Tatoeba": "f1"}


def write_task_result(rev_dir: Path, task: str, entries: dict[str, list[tuple[str, list[str], float]]]) -> Path:
    """One mteb v2 TaskResult file (with an extra top-level key, as newer mteb versions write)."""
    payload = {
        "dataset_revision": "test-fixture",
        "task_name": task,
        "mteb_version": "2.26.24",
        "scores": {
            split: [{"main_score": score, MAIN_METRIC.get(task, "main"): score, "hf_subset": subset, "languages": langs}
                    for subset, langs, score in rows]
            for split, rows in entries.items()
        },
        "evaluation_time": 1.5,
        "kg_co2_emissions": None,
        "date": 1700000000.0,
    }
    path = rev_dir / f"{task}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def write_run(run_dir: Path, scores: list[tuple[str, str, str, list[str], float]] | None = None,
              name: str = MINILM, revision: str = MINILM_REVISION) -> Path:
    """A run directory ``run_dir/results/<model>/<revision>/`` holding ``scores`` (default: MiniLM's)."""
    rev_dir = run_dir / "results" / name.replace("/", "__") / revision
    rev_dir.mkdir(parents=True, exist_ok=True)
    (rev_dir / "model_meta.json").write_text(json.dumps({"name": name, "revision": revision, "framework": ["Sentence Transformers"]}))
    by_task: dict[str, dict[str, list[tuple[str, list[str], float]]]] = {}
    for task, split, subset, langs, score in scores or MINILM_SCORES:
        by_task.setdefault(task, {}).setdefault(split, []).append((subset, langs, score))
    for task, entries in by_task.items():
        write_task_result(rev_dir, task, entries)
    return run_dir


def revision_dir(run_dir: Path, name: str = MINILM, revision: str = MINILM_REVISION) -> Path:
    return run_dir / "results" / name.replace("/", "__") / revision


def scifact_per_query(seed: int = 0, n: int = 300) -> dict[str, float]:
    """Plausible per-query nDCG@10 values for SciFact's 300 test queries whose mean is MiniLM's 0.64508."""
    rng = np.random.default_rng(seed)
    values = np.clip(rng.beta(1.3, 0.7, size=n), 0.0, 1.0)
    values = np.clip(values - values.mean() + 0.64508, 0.0, 1.0)
    return {f"q{i}": float(v) for i, v in enumerate(values)}


def write_per_query(run_dir: Path, task: str, split: str, subset: str, scores: dict[str, float],
                    name: str = MINILM, revision: str = MINILM_REVISION) -> Path:
    path = revision_dir(run_dir, name, revision) / "per_query" / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task_name": task, "main_score": MAIN_METRIC.get(task, "main"),
                                "scores": {split: {subset: scores}}}))
    return path
