"""``train(config) -> exported model directory``: the E5 recipe as one resumable function.

The loop is ours, the machinery is not: peft adds LoRA, DeepSpeed (when configured) partitions
and reduces, torchrun launches processes, sentence-transformers' format is what we export. We own
the loop because the three things that make E5 training right sit between those libraries: GradCache
that composes with ZeRO-3 (one reduction per step), negatives gathered across processes, and an
EOS that is checked on every batch (docs/training.md lists each place and why).

Resumption is exact: batch ``k`` is a pure function of (seed, k, data), checkpoints hold the
optimizer, scheduler and RNG states, and a checkpoint directory only exists once complete (it is
written under a temporary name and renamed), so ``kill -9`` at any point then a re-run ends with
the adapter an uninterrupted run would have produced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from atomicio import atomic_write_json, publish_directory
from atomicio import remove_stale_temporaries as remove_stale_files
from trainers.backbone import (BaseModel, add_lora, compile_layers, default_cache_dir, enable_checkpointing, load_backbone,
                               load_tokenizer, resolve_base)
from trainers.config import TrainConfig
from trainers.data.mixture import Mixture, build_mixture
from trainers.encoder import TextEncoder
from trainers.engine import DeepSpeedEngine, PlainEngine, rng_state, set_rng_state, steps_for
from trainers.errors import TrainInputError
from trainers.export import MODEL_DIR, export_model
from trainers.gradcache import ContrastiveBatch, contrastive_step
from trainers.loss import world
from trainers.reference import ReferenceError_, locate_model
from trainers.templates import format_query

CONFIG_FILE = "train_config.json"
CHECKPOINTS = "checkpoints"
MIXTURE_FILE = "data/mixture.jsonl"


@dataclass
class Prepared:
    """Everything checked and loaded before the first byte is written."""

    config: TrainConfig
    config_path: Path | None
    output: Path
    base: BaseModel
    encoder: TextEncoder
    use_e5: bool
    device: torch.device


@dataclass
class TrainResult:
    model_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0


def default_output(config: TrainConfig, config_path: Path | None) -> Path:
    if config.output:
        path = Path(config.output).expanduser()
        if not path.is_absolute():
            path = (config_path.parent if config_path else Path.cwd()) / path
        return path.resolve()
    stem = config.name or (config_path.stem if config_path else "model")
    return (Path.cwd() / "runs" / "train" / stem).resolve()


def check_output(output: Path, config: TrainConfig, config_path: Path | None) -> None:
    """An output folder may be empty, or hold this very training (resume) — never another model."""
    if output.exists() and not output.is_dir():
        raise TrainInputError(config_path, "output", f"{output} is a file", "choose a directory for --output")
    if not output.is_dir() or not any(output.iterdir()):
        return
    marker = output / CONFIG_FILE
    if not marker.is_file():
        raise TrainInputError(config_path, "output", f"{output} is not empty and holds no training run",
                              "choose an empty or new --output directory")
    saved = json.loads(marker.read_text(encoding="utf-8"))
    if saved.get("identity") != config.identity():
        raise TrainInputError(config_path, "output", f"{output} already holds a different model (its config differs)",
                              "choose another --output directory, or delete that one to retrain")


def _device(spec: str) -> torch.device:
    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def prepare(config: TrainConfig, *, config_path: Path | None = None, output: Path | None = None,
            cache_dir: Path | None = None) -> Prepared:
    """Validate everything that can be validated and load the model; writes nothing but caches."""
    base_dir = config_path.parent if config_path else Path.cwd()
    out = output.resolve() if output else default_output(config, config_path)
    check_output(out, config, config_path)
    if config.precision == "fp16" and config.deepspeed is None:
        raise TrainInputError(config_path, "precision", "fp16 needs loss scaling, which the plain engine does not do",
                              "use precision: bf16, or fp16 together with deepspeed:")
    try:
        location = locate_model(config.base_model, base_dir)
    except ReferenceError_ as exc:
        raise TrainInputError(config_path, "base_model", exc.problem, exc.fix) from None
    cache = cache_dir or default_cache_dir()
    base = resolve_base(location, gguf_file=config.gguf_file, pooling=config.pooling, cache_dir=cache, config_path=config_path,
                        revision=config.revision)
    tokenizer = load_tokenizer(base, config_path)
    torch.manual_seed(config.seed)
    backbone = load_backbone(base, "float32")
    if config.gradient_checkpointing:
        enable_checkpointing(backbone, keep_layers=config.uncheckpointed_layers)
    if config.lora is not None:
        backbone = add_lora(backbone, r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                            target_modules=config.lora.target_modules, config_path=config_path)
    if config.compile:
        compile_layers(backbone)
    use_e5 = config.instructions == "e5" or (config.instructions == "auto" and base.architecture == "decoder")
    encoder = TextEncoder(backbone, tokenizer, base.pooling, base.normalize)
    return Prepared(config, config_path, out, base, encoder, use_e5, _device(config.device))


def mining_encoder(prep: Prepared, cache_dir: Path | None) -> TextEncoder:
    """The base model itself, or ``miner:`` (e.g. a small encoder mining for a 7B decoder)."""
    cfg = prep.config
    if cfg.miner is None:
        return prep.encoder
    base_dir = prep.config_path.parent if prep.config_path else Path.cwd()
    try:
        location = locate_model(cfg.miner, base_dir)
    except ReferenceError_ as exc:
        raise TrainInputError(prep.config_path, "miner", exc.problem, exc.fix) from None
    cache = cache_dir or default_cache_dir()
    base = resolve_base(location, gguf_file=None, pooling="auto", cache_dir=cache, config_path=prep.config_path, field="miner")
    return TextEncoder(load_backbone(base), load_tokenizer(base, prep.config_path), base.pooling, base.normalize)


def make_mining_encoder(encoder: TextEncoder, device: torch.device, config: TrainConfig) -> Callable[[list[str], bool], np.ndarray]:
    """Embed with the *base* model (LoRA B starts at zero, dropout off) for hard-negative mining."""
    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        limit = config.query_max_length if is_query else config.passage_max_length
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # length-sorted batches: little padding
        out: np.ndarray | None = None
        was_training = encoder.training
        encoder.eval().to(device)
        with torch.inference_mode():
            for start in range(0, len(order), 32):
                idx = order[start : start + 32]
                batch = {k: v.to(device) for k, v in encoder.tokenize([texts[i] for i in idx], limit).items()}
                vec = encoder(**batch).float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
                out[idx] = vec
        encoder.train(was_training)
        if out is None:
            out = np.zeros((0, 0), dtype=np.float32)
        return out
    return encode


def _init_distributed(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)


def _checkpoints(output: Path) -> list[tuple[int, Path]]:
    root = output / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and (p / "complete.json").is_file():
            found.append((int(p.name.split("-")[1]), p))
    return sorted(found)


def _rng_file(directory: Path, rank: int) -> Path:
    return directory / f"rng-rank{rank:03d}.pt"


def _save_checkpoint(engine: Any, output: Path, step: int, client: dict[str, Any]) -> None:
    """Engine state plus one RNG file per rank, in a temporary directory renamed once complete.

    The RNG state is per rank because each rank draws its own dropout masks (its local batch has
    its own shapes): restoring rank 0's generators on every rank would change the masks of the
    other ranks after a resume.
    """
    rank, size = world()
    root = output / CHECKPOINTS
    tmp = root / f".tmp-step-{step:06d}"
    final = root / f"step-{step:06d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if size > 1:
        dist.barrier()
    engine.save(tmp, client)
    torch.save(rng_state(), _rng_file(tmp, rank))
    if size > 1:
        dist.barrier()
    if rank == 0:
        atomic_write_json(tmp / "complete.json", {"step": step})
        publish_directory(tmp, final)
        for old_step, old in _checkpoints(output)[:-2]:
            shutil.rmtree(old, ignore_errors=True)
    if size > 1:
        dist.barrier()


def _load_rng(directory: Path, rank: int) -> None:
    """This rank's generators from the checkpoint (rank 0's if the run had fewer processes)."""
    path = _rng_file(directory, rank)
    if not path.is_file():
        path = _rng_file(directory, 0)
    set_rng_state(torch.load(path, map_location="cpu", weights_only=False))


def remove_abandoned(output: Path) -> list[Path]:
    """Delete what a killed run leaves: half-written checkpoints, exports and files.

    All are written under temporary names and renamed when complete (checkpoints ``.tmp-step-*``,
    the export ``.model.tmp-*``, single files ``.NAME.*.tmp`` from atomicio), so anything still
    under such a name was abandoned mid-write; one training owns an output directory, so nothing
    else writes there. Returns the directories removed.
    """
    stale = list((output / CHECKPOINTS).glob(".tmp-step-*")) + list(output.glob(f".{MODEL_DIR}.tmp-*"))
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    remove_stale_files(output)
    return stale


def _batch_texts(examples: list[Any], k: int, use_e5: bool) -> tuple[list[str], list[str], list[bool]]:
    queries = [format_query(e.instruction, e.query) if use_e5 else e.query for e in examples]
    docs = [e.positive for e in examples] + [n for e in examples for n in e.negatives[:k]]
    return queries, docs, [bool(e.in_batch_negatives) for e in examples]


def train(config: TrainConfig, *, config_path: Path | None = None, output: Path | None = None,
          cache_dir: Path | None = None, provenance: dict[str, Any] | None = None,
          progress: bool = True, prepared: Prepared | None = None) -> TrainResult:
    """Train (or resume) and export; returns where the sentence-transformers model was written."""
    started = time.time()
    prep = prepared or prepare(config, config_path=config_path, output=output, cache_dir=cache_dir)
    out, device = prep.output, prep.device
    _init_distributed(device)
    rank, size = world()
    cfg = prep.config
    if rank == 0 and out.is_dir():
        remove_abandoned(out)
    mixture_path = out / MIXTURE_FILE
    if mixture_path.is_file():
        mixture = Mixture.load(mixture_path)
    else:
        base_dir = prep.config_path.parent if prep.config_path else Path.cwd()
        mixture = build_mixture(cfg.data, base_dir, make_mining_encoder(mining_encoder(prep, cache_dir), device, cfg), cfg.seed,
                                config_file=prep.config_path)
    global_batch = cfg.batch_size
    if global_batch % size:
        raise TrainInputError(prep.config_path, "batch_size", f"{global_batch} is not divisible by {size} processes",
                              "choose a batch_size that is a multiple of the number of processes")
    mixture.check_batch_size(global_batch)
    # Everything is validated (bad input has written nothing). The marker goes first: a run killed
    # after writing anything else must still be recognised as this training, or it could never resume.
    if rank == 0:
        atomic_write_json(out / CONFIG_FILE, {"identity": cfg.identity(), "config": cfg.model_dump(mode="json"),
                                              "config_path": str(prep.config_path) if prep.config_path else None})
        if not mixture_path.is_file():
            mixture.save(mixture_path)
    if size > 1:
        dist.barrier()

    total_examples = sum(mixture.counts().values())
    local_batch = global_batch // size
    total_steps = cfg.max_steps or steps_for(total_examples, global_batch, cfg.epochs or 1.0)
    model_dir = out / MODEL_DIR
    done_card = model_dir / "training.json"
    if done_card.is_file() and _checkpoints(out) and _checkpoints(out)[-1][0] == total_steps:
        card = json.loads(done_card.read_text(encoding="utf-8"))
        if card.get("config_identity") == cfg.identity() and card.get("steps") == total_steps:
            return TrainResult(model_dir=model_dir, steps=total_steps, losses=list(card.get("losses") or []),
                               seconds=time.time() - started, resumed_from=total_steps)

    engine: PlainEngine | DeepSpeedEngine
    common = dict(lr=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
                  total_steps=total_steps, max_grad_norm=cfg.max_grad_norm)
    if cfg.deepspeed is not None:
        engine = DeepSpeedEngine(prep.encoder, stage=cfg.deepspeed.stage, precision=cfg.precision,
                                 offload_optimizer=cfg.deepspeed.offload_optimizer, offload_params=cfg.deepspeed.offload_params,
                                 micro_batch=local_batch, **common)
        device = engine.device
        autocast: Callable[[], Any] = contextlib.nullcontext
    else:
        engine = PlainEngine(prep.encoder, device=device, **common)
        if cfg.precision == "bf16":
            autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
        else:
            autocast = contextlib.nullcontext

    losses: list[float] = []
    start_step = 0
    found = _checkpoints(out)
    if found:
        start_step, latest = found[-1]
        client = engine.load(latest)
        _load_rng(latest, rank)
        losses = list(client.get("losses", []))
    resumed_from = start_step
    prep.encoder.train()
    window_t, window_n = time.time(), 0
    for step in range(start_step, total_steps):
        source, examples = mixture.batch(step, global_batch, cfg.seed)
        k = min([cfg.hard_negatives] + [len(e.negatives) for e in examples])
        local = examples[rank * local_batch : (rank + 1) * local_batch]
        queries, docs, in_batch = _batch_texts(local, k, prep.use_e5)
        batch = ContrastiveBatch(queries=prep.encoder.tokenize(queries, cfg.query_max_length),
                                 documents=prep.encoder.tokenize(docs, cfg.passage_max_length),
                                 in_batch=torch.tensor(in_batch))
        loss = contrastive_step(engine.forward, batch, engine.backward, temperature=cfg.temperature,
                                mini_batch_size=cfg.mini_batch_size, device=device, autocast=autocast)
        engine.step()
        if size > 1:
            t = torch.tensor([loss], device=device if device.type == "cuda" else "cpu")
            dist.all_reduce(t)
            loss = float(t.item()) / size
        losses.append(loss)
        window_n += global_batch
        done = step + 1
        if progress and rank == 0 and (done % cfg.log_every == 0 or done == total_steps):
            rate = window_n / max(time.time() - window_t, 1e-9)
            print(f"step {done}/{total_steps}  loss {loss:.4f}  lr {engine.lr():.2e}  {rate:.1f} examples/s  [{source}]",
                  file=sys.stderr, flush=True)
            window_t, window_n = time.time(), 0
        if done % cfg.save_every == 0 or done == total_steps:
            _save_checkpoint(engine, out, done, {"losses": losses, "step": done})

    trainable = engine.trainable_state()
    if rank == 0:
        card = {
            "name": cfg.name, "base_model": cfg.base_model, "base_load_path": prep.base.load_path,
            "gguf_file": prep.base.gguf_file, "steps": total_steps, "final_loss": losses[-1] if losses else None,
            "losses": losses, "examples_seen": total_steps * global_batch, "processes": size,
            "data": {"counts": mixture.counts(), "fingerprint": mixture.fingerprint()},
            "hyperparameters": cfg.model_dump(mode="json", exclude={"data", "output"}),
            "config_identity": cfg.identity(), **(provenance or {}),
        }
        instructions = {}
        for name, exs in mixture.sources.items():
            if exs:
                instructions[name] = exs[0].instruction
        export_model(base=prep.base, tokenizer=prep.encoder.tokenizer, trainable=trainable, lora=cfg.lora,
                     merge=cfg.merge_adapter, pooling=prep.base.pooling, normalize=prep.base.normalize,
                     max_length=cfg.passage_max_length, instructions=instructions, use_e5=prep.use_e5,
                     out_dir=model_dir, card=card)
    if size > 1:
        dist.barrier()
    return TrainResult(model_dir=model_dir, steps=total_steps, losses=losses, seconds=time.time() - started,
                       resumed_from=resumed_from)
