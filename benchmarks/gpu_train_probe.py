"""GPU throughput of the project's trainer on a Mistral-7B-shaped model (random weights).

No hub on GPU machines, so the model has Mistral-7B's real shapes and random values: throughput
and memory depend on shapes, not values. Everything below the model goes through the project's
own training code — ``trainers.backbone.add_lora``/``compile_layers``, ``trainers.encoder.TextEncoder``,
``trainers.gradcache.contrastive_step`` and ``trainers.engine.PlainEngine`` — with the E5 recipe:
LoRA r=16 on q,k,v,o,gate,up,down, InfoNCE over in-batch + one hard negative, bf16, queries 128
and passages 256 tokens.

MFU = 4·N·tokens/s / 989 TFLOP/s (the anchor's definition in ../shared/NOTES.md: forward 2N +
activation-gradient backward 2N; LoRA has no weight gradients for the frozen base, and recompute
by gradient checkpointing or GradCache's extra no-grad forward is *not* counted as useful work).

Usage: python benchmarks/gpu_train_probe.py [--variants anchor,compiled,...] [--steps 4] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

PEAK_FLOPS = 989e12
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

VARIANTS = {
    # name: (lora dropout, compile each layer, gradient checkpointing, GradCache mini-batch, examples per step)
    # checkpointing: True = every block, False = none, an int k = all but the first k blocks (selective)
    "anchor": (0.1, False, True, None, 64),
    "dropout0": (0.0, False, True, None, 64),
    "compiled": (0.0, True, True, None, 64),
    "gradcache16": (0.0, True, False, 16, 64),
    "gradcache32": (0.0, True, False, 32, 128),
    "compiled128": (0.0, True, True, None, 128),
    "selective8": (0.0, True, 8, None, 64),
    "selective12": (0.0, True, 12, None, 64),
    "nockpt16": (0.0, True, False, None, 16),
}


SHAPES = {
    "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
}
DEVICE = "cuda"
SHAPE = "mistral-7b"


def build(dropout: float, compile_: bool, checkpointing: bool | int):
    from transformers import MistralConfig, MistralModel

    from trainers.backbone import add_lora, compile_layers
    from trainers.encoder import TextEncoder

    cfg = MistralConfig(**SHAPES[SHAPE], vocab_size=32000, max_position_embeddings=32768, rms_norm_eps=1e-5,
                        attn_implementation="sdpa")
    with torch.device(DEVICE):
        torch.set_default_dtype(torch.bfloat16)
        model = MistralModel(cfg)
        torch.set_default_dtype(torch.float32)
    model.requires_grad_(False)
    model.config.use_cache = False
    if checkpointing is not False:
        from trainers.backbone import enable_checkpointing

        enable_checkpointing(model, keep_layers=0 if checkpointing is True else int(checkpointing))
    n_params = sum(p.numel() for p in model.parameters())
    model = add_lora(model, r=16, alpha=32, dropout=dropout, target_modules=TARGETS, config_path=None)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp32 master LoRA weights, bf16 autocast compute
    if compile_:
        compile_layers(model)
    enc = TextEncoder(model, tokenizer=None, pooling="lasttoken", normalize=True)
    return enc, n_params


def batch_of(n: int, q_len: int = 128, p_len: int = 256):
    from trainers.gradcache import ContrastiveBatch

    if SHAPE == "tiny":
        q_len, p_len = 16, 32

    def ids(rows: int, length: int) -> dict[str, torch.Tensor]:
        x = torch.randint(3, 32000, (rows, length))
        x[:, -1] = 2  # EOS last, as the tokenizer appends it
        return {"input_ids": x, "attention_mask": torch.ones(rows, length, dtype=torch.long)}

    return ContrastiveBatch(queries=ids(n, q_len), documents=ids(2 * n, p_len), in_batch=torch.ones(n, dtype=torch.bool)), \
        n * q_len + 2 * n * p_len


def run_variant(name: str, steps: int) -> dict:
    from trainers.engine import PlainEngine
    from trainers.gradcache import contrastive_step

    dropout, compile_, ckpt, mini, n = VARIANTS[name]
    cuda = DEVICE == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    enc, n_params = build(dropout, compile_, ckpt)
    device = torch.device(DEVICE)
    engine = PlainEngine(enc, lr=1e-4, weight_decay=0.0, warmup_steps=0, total_steps=1000, max_grad_norm=None, device=device)
    autocast = lambda: torch.autocast(DEVICE, dtype=torch.bfloat16)  # noqa: E731
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times, losses = [], []
    batch, tokens = batch_of(n)
    for i in range(steps + 2):  # two warm-up steps (compilation, allocator)
        sync()
        t = time.perf_counter()
        loss = contrastive_step(engine.forward, batch, engine.backward, temperature=0.02, mini_batch_size=mini,
                                device=device, autocast=autocast)
        engine.step()
        sync()
        if i >= 2:
            times.append(time.perf_counter() - t)
            losses.append(float(loss))
    step_s = sorted(times)[len(times) // 2]
    tps = tokens / step_s
    out = {"variant": name, "examples_per_step": n, "lora_dropout": dropout, "compiled": compile_,
           "gradient_checkpointing": ckpt, "gradcache_mini_batch": mini, "params": n_params,
           "tokens_per_step": tokens, "step_s": round(step_s, 3), "tokens_per_s": round(tps),
           "mfu": round(4 * n_params * tps / PEAK_FLOPS, 3),
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None, "loss_finite": all(l == l for l in losses)}
    del engine, enc
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="anchor,compiled,gradcache16")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", default=None)
    ap.add_argument("--tiny-cpu", action="store_true", help="a 2-layer model on CPU: checks the script, measures nothing")
    args = ap.parse_args()
    global DEVICE, SHAPE
    if args.tiny_cpu:
        DEVICE, SHAPE = "cpu", "tiny"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        print(torch.cuda.get_device_name(0), torch.__version__, flush=True)
    results = []
    for name in args.variants.split(","):
        t = time.time()
        try:
            r = run_variant(name, args.steps)
        except torch.OutOfMemoryError as exc:  # report and go on: one variant's OOM says something too
            r = {"variant": name, "error": f"OOM: {str(exc)[:200]}"}
            torch.cuda.empty_cache()
        r["wall_s"] = round(time.time() - t, 1)
        results.append(r)
        print(json.dumps(r), flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
