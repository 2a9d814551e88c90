"""``train(config) -> exported model directory``: the E5 recipe as one resumable function.

The loop is ours, the machinery is not: peft adds LoRA, DeepSpeed (when configured) partitions
and reduces, torchrun launches processes, sentence-transformers' format is what we export. We own
the loop because the three things that make E5 training right sit between those libraries: GradCache
that composes with ZeRO-3 (one reduction per step), negatives gathered across processes, and an
EOS that is checked on every batch (docs/training.md lists each place and why).

No step is trained twice. An output folder is one training, named by its content identity
(``trainers.identity``: base, data and recipe by content, never paths), so a moved output or data
folder resumes. Resumption is exact: batch ``k`` is a pure function of (seed, k, data), checkpoints
hold the optimizer, scheduler and RNG states and are whole or absent (``trainers.checkpoints``), so
``kill -9`` at any point then a re-run ends with the adapter an uninterrupted run would have
produced; and a complete export is done, with or without its checkpoints.

The step loop does not wait for the device: the loss and gradient norm stay there and are read
at logging and checkpoint steps only, when they go to ``metrics.jsonl`` (``trainers.metrics``),
the trackers of ``report_to`` (``trainers.trackers``) and the progress display (``trainers.progress``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from atomicio import atomic_write_json
from trainers.backbone import (BaseModel, add_lora, compile_layers, decoder_layers, enable_checkpointing, load_backbone,
                               load_tokenizer, resolve_base)
from trainers.checkpoints import checkpoints, load_rng, remove_abandoned, save_checkpoint
from trainers.config import TrainConfig
from trainers.data.content import data_content
from trainers.dev import BestWeights, DevScorer, dev_line
from trainers.data.mixture import Mixture, build_mixture, check_negatives_possible, negatives_per_source
from trainers.encoder import TextEncoder
from trainers.engine import DeepSpeedEngine, PlainEngine, steps_for
from trainers.errors import TrainInputError
from trainers.execution import Execution, resolve_execution
from trainers.export import MODEL_DIR, export_model
from trainers.gguf import CACHE_DIR, standalone_cache_dir
from trainers.gradcache import ContrastiveBatch, contrastive_step
from trainers.identity import frozen_dtype, training_identity, uses_e5
from trainers.loss import global_mean, world
from trainers.metrics import METRICS_FILE, MetricsWriter, StepMetrics, flops_per_token
from trainers.progress import TrainProgress
from trainers.reference import ModelReferenceError, locate_model
from trainers.templates import format_query
from trainers.trackers import Trackers, check_trackers, open_trackers

CONFIG_FILE = "train_config.json"
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
    identity: str = ""  # trainers.identity.training_identity: what the output folder holds
    cache_dir: Path | None = None
    miner: BaseModel | None = None  # the mining model when it is not the base and negatives are mined
    execution: Execution | None = None
    dev_scorer: DevScorer | None = None  # scores the model every eval_every steps (trainers.dev)


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


def check_output(output: Path, identity: str, config_path: Path | None) -> None:
    """An output folder may be empty, or hold this very training (resume) — never another model."""
    if output.exists() and not output.is_dir():
        raise TrainInputError(config_path, "output", f"{output} is a file", "choose a directory for --output")
    if not output.is_dir() or not any(p.name != CACHE_DIR for p in output.iterdir()):
        return
    marker = output / CONFIG_FILE
    if not marker.is_file():
        raise TrainInputError(config_path, "output", f"{output} is not empty and holds no training run",
                              "choose an empty or new --output directory")
    saved = json.loads(marker.read_text(encoding="utf-8"))
    if saved.get("identity") != identity:
        raise TrainInputError(config_path, "output", f"{output} already holds a different model (its base, data or recipe differs)",
                              "choose another --output directory, or delete that one to retrain")


def _device(spec: str) -> torch.device:
    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _resolve_model(ref: str, *, gguf_file: str | None, pooling: str, revision: str | None, field_name: str,
                   base_dir: Path, cache_dir: Path, config_path: Path | None) -> BaseModel:
    try:
        location = locate_model(ref, base_dir)
    except ModelReferenceError as exc:
        raise TrainInputError(config_path, field_name, exc.problem, exc.fix) from None
    return resolve_base(location, gguf_file=gguf_file, pooling=pooling, cache_dir=cache_dir, config_path=config_path,
                        field=field_name, revision=revision)


def identify(config: TrainConfig, *, config_path: Path | None, cache_dir: Path,
             dev: str | None = None) -> tuple[str, BaseModel, BaseModel | None]:
    """(training identity, base, miner if negatives are mined with one): what an output folder of
    this config holds, by content (``trainers.identity``). Reads files, loads no weights; a GGUF
    base's dense copy is built in ``cache_dir`` if missing."""
    base_dir = config_path.parent if config_path else Path.cwd()
    data, mines = data_content(config.data, base_dir, config_path)  # first: a missing data file costs no model
    base = _resolve_model(config.base_model, gguf_file=config.gguf_file, pooling=config.pooling, revision=config.revision,
                          field_name="base_model", base_dir=base_dir, cache_dir=cache_dir, config_path=config_path)
    miner = None
    if config.miner is not None and mines:
        miner = _resolve_model(config.miner, gguf_file=None, pooling="auto", revision=None, field_name="miner",
                               base_dir=base_dir, cache_dir=cache_dir, config_path=config_path)
    return training_identity(config, base, data, miner, dev), base, miner


def prepare(config: TrainConfig, *, config_path: Path | None = None, output: Path | None = None,
            cache_dir: Path | None = None, dev_scorer: DevScorer | None = None) -> Prepared:
    """Validate everything that can be validated and load the model; writes nothing but caches.

    ``cache_dir`` receives the dense copy of a GGUF base (the harness passes its run folder's
    ``cache/``); by default :func:`standalone_cache_dir`. ``dev_scorer`` scores the model every
    ``eval_every`` steps (``trainers.dev``); a config with ``eval_every`` needs one.
    """
    out = output.resolve() if output else default_output(config, config_path)
    check_trackers(config.report_to, config_path)
    if config.eval_every is not None and dev_scorer is None:
        raise TrainInputError(config_path, "eval_every", "a dev score during training needs a scorer for eval_task, and "
                              "none was given", "run it with 'harness train' or 'harness run' (they score eval_task), "
                              "or pass dev_scorer= to trainers.train.prepare")
    if config.precision == "fp16" and config.deepspeed is None:
        raise TrainInputError(config_path, "precision", "fp16 needs loss scaling, which the plain engine does not do",
                              "use precision: bf16, or fp16 together with deepspeed:")
    # before any data is read or mined: a source that cannot give hard_negatives per example
    check_negatives_possible(config.data, config_path.parent if config_path else Path.cwd(), config.hard_negatives, config_path)
    cache = cache_dir or standalone_cache_dir(out)
    identity, base, miner = identify(config, config_path=config_path, cache_dir=cache,
                                     dev=dev_scorer.identity if dev_scorer is not None else None)
    check_output(out, identity, config_path)
    tokenizer = load_tokenizer(base, config_path)
    torch.manual_seed(config.seed)
    backbone = load_backbone(base, frozen_dtype(config))  # LoRA + bf16: frozen weights in bf16 (trainers.identity)
    device = _device(config.device)
    execution = resolve_execution(config, device, backbone, len(decoder_layers(backbone)))
    if execution.gradient_checkpointing:
        enable_checkpointing(backbone, keep_layers=execution.uncheckpointed_layers)
    if config.lora is not None:
        backbone = add_lora(backbone, r=config.lora.r, alpha=config.lora.alpha, dropout=config.lora.dropout,
                            target_modules=config.lora.target_modules, config_path=config_path)
    if execution.compile:
        compile_layers(backbone)
    encoder = TextEncoder(backbone, tokenizer, base.pooling, base.normalize)
    return Prepared(config, config_path, out, base, encoder, uses_e5(config, base), device, identity=identity,
                    cache_dir=cache, miner=miner, execution=execution, dev_scorer=dev_scorer)


def mining_encoder(prep: Prepared) -> TextEncoder:
    """The base model itself, or ``miner:`` (e.g. a small encoder mining for a 7B decoder)."""
    if prep.config.miner is None:
        return prep.encoder
    base = prep.miner
    if base is None:  # prepared by hand (a test) or no source mines: resolve it now
        base = _resolve_model(prep.config.miner, gguf_file=None, pooling="auto", revision=None, field_name="miner",
                              base_dir=prep.config_path.parent if prep.config_path else Path.cwd(),
                              cache_dir=prep.cache_dir or standalone_cache_dir(prep.output), config_path=prep.config_path)
    return TextEncoder(load_backbone(base), load_tokenizer(base, prep.config_path), base.pooling, base.normalize)


def make_mining_encoder(load: Callable[[], TextEncoder], device: torch.device,
                        config: TrainConfig) -> Callable[[list[str], bool], np.ndarray]:
    """Embed with the *base* model (LoRA B starts at zero, dropout off) for hard-negative mining.

    The model is loaded on first use: a mixture without mined sources never loads a miner.
    """
    loaded: list[TextEncoder] = []

    def encode(texts: list[str], is_query: bool) -> np.ndarray:
        if not loaded:
            loaded.append(load())
        encoder = loaded[0]
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


def process_group_backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def _init_distributed(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(process_group_backend(device))
        if device.type == "cuda":
            torch.cuda.set_device(device)


def _batch_texts(examples: list[Any], k: int, use_e5: bool) -> tuple[list[str], list[str], list[bool]]:
    queries = [format_query(e.instruction, e.query) if use_e5 else e.query for e in examples]
    docs = [e.positive for e in examples] + [n for e in examples for n in e.negatives[:k]]
    return queries, docs, [bool(e.in_batch_negatives) for e in examples]


def _done(model_dir: Path, identity: str, total_steps: int) -> dict[str, Any] | None:
    """The card of a complete export of this training (checkpoints or not), else None."""
    try:
        card = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if card.get("config_identity") == identity and card.get("steps") == total_steps else None


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
        mixture = build_mixture(cfg.data, base_dir, make_mining_encoder(lambda: mining_encoder(prep), device, cfg), cfg.seed,
                                config_file=prep.config_path)
    global_batch = cfg.batch_size
    if global_batch % size:
        raise TrainInputError(prep.config_path, "batch_size", f"{global_batch} is not divisible by {size} processes",
                              "choose a batch_size that is a multiple of the number of processes")
    mixture.check_batch_size(global_batch)
    base_dir = prep.config_path.parent if prep.config_path else Path.cwd()
    negatives = negatives_per_source(cfg.data, base_dir, cfg.hard_negatives, prep.config_path)
    mixture.check_negatives(negatives, prep.config_path)
    # Everything is validated (bad input has written nothing). The marker goes first: a run killed
    # after writing anything else must still be recognised as this training, or it could never resume.
    if rank == 0:
        atomic_write_json(out / CONFIG_FILE, {"identity": prep.identity, "config": cfg.model_dump(mode="json"),
                                              "config_path": str(prep.config_path) if prep.config_path else None})
        if not mixture_path.is_file():
            mixture.save(mixture_path)
    if size > 1:
        dist.barrier()

    total_examples = sum(mixture.counts().values())
    local_batch = global_batch // size
    total_steps = cfg.max_steps or steps_for(total_examples, global_batch, cfg.epochs or 1.0)
    model_dir = out / MODEL_DIR
    card = _done(model_dir, prep.identity, total_steps)
    if card is not None:  # exported: done, whether or not its checkpoints were deleted since
        return TrainResult(model_dir=model_dir, steps=total_steps, losses=list(card.get("losses") or []),
                           seconds=time.time() - started, resumed_from=total_steps)

    model_flops_per_token = flops_per_token(prep.encoder, lora=cfg.lora is not None)  # before ZeRO-3 partitions it
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
    found = checkpoints(out)
    if found:
        start_step, latest = found[-1]
        client = engine.load(latest)
        load_rng(latest, rank)
        losses = list(client.get("losses", []))
    resumed_from = start_step
    recorder = StepMetrics(device, global_batch=global_batch, flops_per_token=model_flops_per_token, world_size=size)
    with contextlib.ExitStack() as stack:
        # rank 0 reports; metrics.jsonl is trimmed to the checkpoint resumed from before it is appended to
        writer = MetricsWriter(out / METRICS_FILE, start_step) if rank == 0 else None
        if writer is not None:
            stack.callback(writer.close)
        trackers = (open_trackers(cfg.report_to, out, start_step=start_step, run_name=cfg.name or out.name,
                                  config={"identity": prep.identity, **cfg.recipe()})
                    if rank == 0 else Trackers([]))
        stack.callback(trackers.close)
        bar = TrainProgress(enabled=progress and rank == 0, total=total_steps, start=start_step,
                            global_batch=global_batch, device=device)
        stack.callback(bar.close)

        best = BestWeights(out, start_step) if cfg.select_best and rank == 0 else None

        def flush() -> None:
            """The window's metrics, read from the device with one sync, to every place they go."""
            lines = recorder.flush()
            losses.extend(line["loss"] for line in lines)
            if writer is not None:
                writer.write(lines)
                trackers.log(lines)
                bar.add(lines)

        prep.encoder.train()
        for step in range(start_step, total_steps):
            started = time.perf_counter()
            source, examples = mixture.batch(step, global_batch, cfg.seed)
            local = examples[rank * local_batch : (rank + 1) * local_batch]
            queries, docs, in_batch = _batch_texts(local, negatives[source], prep.use_e5)
            batch = ContrastiveBatch(queries=prep.encoder.tokenize(queries, cfg.query_max_length),
                                     documents=prep.encoder.tokenize(docs, cfg.passage_max_length),
                                     in_batch=torch.tensor(in_batch))
            lr = engine.lr()  # the rate this step's update uses (the scheduler moves on inside step())
            loss = contrastive_step(engine.forward, batch, engine.backward, temperature=cfg.temperature,
                                    mini_batch_size=cfg.mini_batch_size, device=device, autocast=autocast)
            grad_norm = engine.step()
            # real (unpadded) tokens of this process's batch, counted on the host from the masks
            tokens = int(batch.queries["attention_mask"].sum()) + int(batch.documents["attention_mask"].sum())
            done = step + 1
            recorder.add(step=done, loss=global_mean(loss), grad_norm=grad_norm, lr=lr, tokens=tokens, started=started,
                         source=source)
            bar.step()
            logging, saving = done % cfg.log_every == 0 or done == total_steps, done % cfg.save_every == 0 or done == total_steps
            evaluating = cfg.eval_every is not None and (done % cfg.eval_every == 0 or done == total_steps)
            if logging or saving or evaluating:  # a checkpoint only after its steps' metrics are on disk
                flush()
            if logging:
                bar.log()
            if evaluating:  # after the step's train line, before its checkpoint (trainers.dev)
                if rank == 0 and prep.dev_scorer is not None:
                    line = dev_line(prep.dev_scorer, prep.encoder, done, use_e5=prep.use_e5)
                    if writer is not None:
                        writer.write([line])
                    trackers.log([line])
                    bar.note(f"step {done}/{total_steps}  dev {line['task']} main score {line['main_score']}")
                    if best is not None:
                        best.offer(line, engine.trainable_state)
                if size > 1:
                    dist.barrier()
            if saving:
                save_checkpoint(engine, out, done, {"losses": losses, "step": done})

    trainable = best.weights() if best is not None else engine.trainable_state()
    if rank == 0:
        execution = prep.execution.as_dict() if prep.execution else {}
        card = {
            "name": cfg.name, "base_model": cfg.base_model, "base_load_path": prep.base.load_path,
            "gguf_file": prep.base.gguf_file, "steps": total_steps, "final_loss": losses[-1] if losses else None,
            "losses": losses, "examples_seen": total_steps * global_batch, "processes": size,
            "data": {"counts": mixture.counts(), "fingerprint": mixture.fingerprint(),
                     "hard_negatives": negatives},  # per source, as every batch of it used
            "hyperparameters": cfg.model_dump(mode="json", exclude={"data", "output"}) | execution
                               | {"pooling": prep.base.pooling, "instructions": "e5" if prep.use_e5 else "none",
                                  "frozen_dtype": frozen_dtype(cfg)},
            "config_identity": prep.identity, **(provenance or {}),
            **({"dev": {"task": prep.dev_scorer.task, "every": cfg.eval_every, "select_best": cfg.select_best,
                        **({"selected_step": best.step, "selected_score": best.score} if best is not None else {})}}
               if cfg.eval_every is not None and prep.dev_scorer is not None else {}),
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
