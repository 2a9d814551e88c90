"""What the steps a plan still has to run will cost: LLM calls and dollars, GPU-hours.

Shown by ``harness plan`` (one line per step, one total). Cached steps cost nothing. Every estimate
carries its assumptions; the anchors are the project's own measurements:

- **generate**: ``generators.estimate.estimate_generation`` (its docstring): the calls the job
  issues, those the run's response cache already answers (looked up by their exact requests), and
  tokens, dollars (an upper bound) or local hours of the calls still to pay.
- **train**: steps (``max_steps``, or ``ceil(examples × epochs / batch_size)`` as the trainer
  computes it) × ``batch_size`` × (``query_max_length`` + (1 + ``hard_negatives``) ×
  ``passage_max_length``) tokens — every text at its maximum length, an upper bound. FLOPs are
  4·N·tokens for LoRA (frozen base: forward 2N + backward through the activations 2N, no weight
  gradients) and 6·N·tokens for a full fine-tune: the convention of docs/benchmarks.md, whose MFU does
  not count recompute. Time is at the MFU that table measured on one H200 for the recipe's settings
  (compile, checkpointing, GradCache). Examples: generated sets count their requested examples
  (before rejects), local files are counted, registry sources without a local copy use the registry
  weight (≈ thousands of examples: approximate).
- **evaluate**: the distinct texts the task encodes — local files counted; hub tasks from mteb's
  ``descriptive_stats`` (evaluation splits, plus the train split of classification tasks, whose
  evaluator embeds training examples) — each at min(characters / 4, max_length) tokens, 2·N·tokens
  (forward only) at the encode anchor of ../shared/NOTES.md: bf16, length-sorted batches, adapters
  merged, MFU 0.50 on one H200. Texts already in the embedding cache are not subtracted.

N is the parameter count of the model as loaded for embedding (no LM head; embedding table included,
as the anchors count it): read from local files (safetensors headers, GGUF tensors), the local hub
cache, mteb's model registry, or a small table of known bases. H100 SXM and H200 share the 989
TFLOP/s bf16 peak; the MFUs were measured on an H200.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from generators.model_size import gguf_params, safetensors_params

PEAK_BF16 = 989e12  # H100 SXM / H200 dense bf16 FLOP/s (docs/benchmarks.md, ../shared/NOTES.md)
PEAK_FP32 = 67e12  # H100 SXM / H200 fp32 without tensor cores: no anchor was measured at fp32
GPU = "H200"
CHARS_PER_TOKEN = 4.0
ENCODE_MFU = 0.50  # ../shared/NOTES.md: encode, bf16, dense batches (35.3k-36.0k tokens/s on 7.11e9 params)
REGISTRY_EXAMPLES_PER_WEIGHT = 1000  # trainers/data/registry.py: weights are ≈ thousands of examples

# Bases whose size cannot be read offline (hub ids not in the local cache nor in mteb's registry).
# Parameters of the model as loaded for embedding (AutoModel: no LM head).
KNOWN_PARAMS: dict[str, float] = {
    # 32 layers × 218,112,000 + 131,072,000 embedding + 4,096 norm; 7.24e9 with the LM head
    "mistralai/Mistral-7B-v0.1": 7_110_660_096,
}

# docs/benchmarks.md, "Training on a GPU" (one H200, Mistral-7B shape, LoRA r=16).
TRAIN_ANCHORS = {
    "plain": (0.226, "no compile (anchor row: LoRA dropout 0.1, checkpointing)"),
    "ckpt": (0.361, "compile + checkpointing"),
    "selective12": (0.417, "compile + selective checkpointing (12 blocks kept)"),
    "selective8": (0.397, "compile + selective checkpointing (8 blocks kept)"),
    "gradcache": (0.348, "compile + GradCache, no checkpointing"),
    "none": (0.498, "compile, no recompute"),
}


@dataclass
class Costs:
    """``per_step``: step key -> estimate (numbers, ``summary``, ``assumptions``); ``total``: the sum."""

    per_step: dict[str, dict[str, Any]] = field(default_factory=dict)
    total: dict[str, Any] = field(default_factory=dict)

    def describe(self, key: str) -> str:
        est = self.per_step.get(key, {})
        return str(est.get("summary") or ", ".join(f"{k}={v}" for k, v in est.items()))

    def describe_total(self) -> str:
        t = self.total
        if not t:
            return "n/a"
        if not t.get("steps_to_run"):
            return "nothing to run ($0, 0 GPU-hours)"
        parts = []
        api_calls = t.get("llm_calls", 0) - t.get("llm_calls_local", 0)
        if api_calls:
            usd = f"≤ ${t['usd']:,.0f}" if t["usd"] >= 10 else f"≤ ${t['usd']:,.2f}"
            unpriced = f" + unpriced calls to {', '.join(t['unpriced_models'])}" if t.get("unpriced_models") else ""
            parts.append(f"{usd} LLM API for {api_calls:,} calls (output at max_tokens){unpriced}")
        if t["gpu_hours"] >= 1:
            parts.append(f"{_hours(t['gpu_hours'])} GPU-hours on one {GPU} (train {_hours(t['gpu_hours_train'])}, "
                         f"evaluate {_hours(t['gpu_hours_evaluate'])})")
        else:
            parts.append(f"{_gpu_time(t['gpu_hours'])} on one GPU")
        if t.get("llm_calls_local"):
            hours = f"≤{_hours(t['local_llm_hours'])} h of" if t.get("local_llm_hours") else "time unknown,"
            parts.append(f"{hours} local LLM generation ({t['llm_calls_local']:,} calls, $0)")
        text = " + ".join(parts)
        if t.get("steps_without_estimate"):
            text += f"; {t['steps_without_estimate']} step(s) without an estimate"
        return text


def estimate_costs(plan: Any) -> Costs:
    """Estimate every step of ``plan`` that is not cached; a failed estimate never stops the plan."""
    from harness.pipeline.store import ArtifactStore

    store = ArtifactStore(plan.output)
    costs = Costs()
    _PROFILES.clear()
    estimators = {"generate": estimate_generate, "train": estimate_train, "evaluate": estimate_evaluate}
    for step in plan.steps:
        if store.is_done(step.kind, step.key):
            costs.per_step[step.key] = {"cached": True, "usd": 0.0, "gpu_hours": 0.0, "summary": "cached: costs nothing"}
            continue
        try:
            est = estimators[step.kind](step, plan)
        except Exception as exc:  # noqa: BLE001 - an estimate is advice; planning must go on
            est = {"unknown": True, "summary": f"no estimate ({type(exc).__name__}: {exc})"}
        costs.per_step[step.key] = est
    costs.total = _total(plan, costs.per_step)
    return costs


def _total(plan: Any, per_step: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kinds = {s.key: s.kind for s in plan.steps}
    todo = {k: v for k, v in per_step.items() if not v.get("cached")}
    unpriced = sorted({m for v in todo.values() for m in v.get("unpriced_models", [])})
    hours = {kind: sum(v.get("gpu_hours") or 0.0 for k, v in todo.items() if kinds[k] == kind) for kind in ("train", "evaluate")}
    return {
        "steps_to_run": len(todo),
        "steps_cached": len(per_step) - len(todo),
        "llm_calls": sum(v.get("llm_calls", 0) for v in todo.values()),
        "llm_calls_local": sum(v.get("llm_calls", 0) for v in todo.values() if v.get("local")),
        "usd": round(sum(v.get("usd") or 0.0 for v in todo.values()), 2),
        "usd_is_upper_bound": True,
        "unpriced_models": unpriced,
        "gpu": GPU,
        "gpu_hours": hours["train"] + hours["evaluate"],
        "gpu_hours_train": hours["train"],
        "gpu_hours_evaluate": hours["evaluate"],
        "local_llm_hours": sum(v.get("local_llm_hours") or 0.0 for v in todo.values()),
        "steps_without_estimate": sum(bool(v.get("unknown")) for v in todo.values()),
    }


# --- formatting -----------------------------------------------------------------------------------

def _hours(h: float) -> str:
    if h >= 100:
        return f"{h:,.0f}"
    if h >= 1:
        return f"{h:.1f}"
    return f"{h:.2g}" if h > 0 else "0"


def _gpu_time(h: float) -> str:
    """GPU time in the unit that reads best: hours, minutes or seconds of one GPU."""
    if h >= 1:
        return f"{_hours(h)} {GPU}-hours"
    if h * 60 >= 1:
        return f"{h * 60:.0f} {GPU}-minutes"
    return f"{h * 3600:.2g} {GPU}-seconds"


def _big(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# --- generate -------------------------------------------------------------------------------------

def estimate_generate(step: Any, plan: Any) -> dict[str, Any]:
    """``generators.estimate`` against the run's response cache (the one ``run_generate`` uses)."""
    from generators.estimate import estimate_generation

    cfg = step.payload["cfg"]
    est = estimate_generation(cfg, cfg.store or plan.output / "cache" / "responses", step.payload["config"])
    return {**est.model_dump(), "llm_calls": est.calls_to_pay, "gpu_hours": 0.0}


# --- model sizes ----------------------------------------------------------------------------------

def _directory_params(path: Path, gguf_file: str | None) -> tuple[float, str] | None:
    if path.is_file() and path.suffix == ".gguf":
        return float(gguf_params(path)), f"GGUF tensors of {path.name}"
    if not path.is_dir():
        return None
    ggufs = [path / gguf_file] if gguf_file else ([] if (path / "config.json").exists() else sorted(path.glob("*.gguf")))
    if len(ggufs) == 1 and ggufs[0].is_file():
        return float(gguf_params(ggufs[0])), f"GGUF tensors of {ggufs[0].name}"
    files = sorted(path.rglob("*.safetensors"))
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        found = model_params(str(base), path) if base else None
        return (found[0], f"base {base} of the adapter ({found[1]})") if found else None
    if files:
        return float(sum(safetensors_params(f) for f in files)), "safetensors headers"
    return None


def _hub_cache_params(repo_id: str, revision: str | None) -> tuple[float, str] | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cache_dir = os.environ.get("HF_HUB_CACHE") or None  # read now, as the backend decision does
    index = try_to_load_from_cache(repo_id, "model.safetensors.index.json", revision=revision, cache_dir=cache_dir)
    names = ["model.safetensors"]
    if isinstance(index, str):
        names = sorted(set(json.loads(Path(index).read_text(encoding="utf-8")).get("weight_map", {}).values()))
    total = 0
    for name in names:
        hit = try_to_load_from_cache(repo_id, name, revision=revision, cache_dir=cache_dir)
        if not isinstance(hit, str):
            return None
        total += safetensors_params(Path(hit))
    return float(total), "safetensors headers in the local hub cache"


@cache
def _mteb_params(repo_id: str) -> float | None:
    try:
        import mteb

        meta = mteb.get_model_meta(repo_id, fetch_from_hf=False)
    except Exception:  # noqa: BLE001 - not in the registry
        return None
    return float(meta.n_parameters) if getattr(meta, "n_parameters", None) else None


def model_params(reference: str, base_dir: Path, *, gguf_file: str | None = None,
                 revision: str | None = None) -> tuple[float, str] | None:
    """(parameter count, where it was read) of a model reference, offline; None when unknowable here."""
    from harness.evaluation.models.reference import resolve_reference

    try:
        ref = resolve_reference(reference, base_dir)
    except Exception:  # noqa: BLE001 - e.g. a path that does not exist yet
        return None
    if ref.kind == "path":
        return _directory_params(Path(ref.value), gguf_file)
    if ref.kind != "hub":
        return None
    cached = _hub_cache_params(ref.value, revision)
    if cached:
        return cached
    n = _mteb_params(ref.value)
    if n:
        return n, "mteb's model registry"
    if ref.value in KNOWN_PARAMS:
        return float(KNOWN_PARAMS[ref.value]), "known size (harness/pipeline/costs.py)"
    return None


def _plan_params(mp: Any, plan: Any) -> tuple[float, str] | None:
    """Parameters of a planned model entry: its own files, or (trained) its base's."""
    if mp.train is None:
        return model_params(mp.spec.model, plan.loaded.base_dir, gguf_file=mp.spec.gguf_file,
                            revision=mp.resolved.identity.hub_commit if mp.resolved else mp.spec.revision)
    return _train_base_params(mp.train, plan)


def _train_base_params(step: Any, plan: Any) -> tuple[float, str] | None:
    payload = step.payload
    if payload.base_step is not None:
        return _train_base_params(payload.base_step, plan)
    return model_params(payload.base, plan.loaded.base_dir, gguf_file=payload.gguf_file, revision=payload.revision)


# --- train ----------------------------------------------------------------------------------------

def train_mfu(cfg: Any) -> tuple[float, str]:
    """The MFU docs/benchmarks.md measured for the settings closest to this recipe's."""
    if not cfg.compile:
        key = "plain"
    elif cfg.gradient_checkpointing:
        key = "selective12" if cfg.uncheckpointed_layers >= 12 else "selective8" if cfg.uncheckpointed_layers >= 8 else "ckpt"
    elif cfg.mini_batch_size:
        key = "gradcache"
    else:
        key = "none"
    return TRAIN_ANCHORS[key]


def _count_lines(path: Path) -> tuple[int, int]:
    """(non-empty lines, uncompressed bytes) of a text file, .gz read through."""
    lines = size = 0
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for line in fh:
            size += len(line)
            lines += bool(line.strip())
    return lines, size


def _positive_qrels(path: Path) -> int:
    n = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                try:
                    n += float(parts[-1]) > 0
                except ValueError:  # the header line
                    pass
    return n


def _judged_queries(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8") as fh:
        rows = [line.split() for line in fh]
    return {r[0] for r in rows if len(r) >= 3 and r[0] not in ("query-id", "qid", "query_id")}


def _local_examples(path: Path, split: str = "train") -> int | None:
    """Examples a local training source yields: BEIR = positive qrels of the split; JSONL = rows."""
    if path.is_dir():
        qrels = path / "qrels" / f"{split}.tsv"
        if qrels.is_file():
            return _positive_qrels(qrels)
        path = path / "examples.jsonl"
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz")):
        return _count_lines(path)[0]
    return None


def _generated_examples(gen_step: Any) -> int:
    from generators.config import load_config

    cfg = load_config(Path(gen_step.payload["config"]))
    return sum(t.count for t in cfg.tasks.values())


def training_examples(data: dict[str, Any], payload: Any, base_dir: Path) -> tuple[int | None, bool, list[str]]:
    """(examples, approximate?, notes) of a mixture as the matrix gives it (``generated`` sources by name)."""
    from trainers.data.registry import PRESETS, REGISTRY

    if data.get("preset") is not None:
        sources = [{"kind": "registry", "source": n, **({"path": data["paths"][n]} if n in data.get("paths", {}) else {})}
                   for n in PRESETS[data["preset"]]]
    else:
        sources = list(data.get("sources") or [])
    total, approx, notes = 0, False, []
    for src in sources:
        kind, n = src["kind"], None
        name = src.get("name") or src.get("source") or src.get("generate") or src.get("dataset") or src.get("path")
        if kind == "generated":
            n = _generated_examples(payload.generated[src["generate"]])
            notes.append(f"{name}: {n:,} requested (before rejects)")
        elif kind in ("synthetic", "pairs", "beir") or (kind == "registry" and src.get("path")):
            n = _local_examples((base_dir / src["path"]).resolve(), src.get("split", "train"))
            if kind == "beir" or (n is not None and (base_dir / src["path"] / "qrels").is_dir()):
                notes.append(f"{name}: hard-negative mining over its corpus not counted")
        elif kind == "registry":
            n = round(REGISTRY[src["source"]].weight * REGISTRY_EXAMPLES_PER_WEIGHT)
            approx = True
        if n is not None and src.get("max_examples"):
            n = min(n, int(src["max_examples"]))
        elif n is None and src.get("max_examples"):
            n, approx = int(src["max_examples"]), True
            notes.append(f"{name}: size unknown offline, taken as its max_examples")
        if n is None:
            notes.append(f"{name}: size unknown offline")
            return None, approx, notes
        total += n
    if approx:
        notes.append("registry sources: weight × 1,000 examples (approx.)")
    return total, approx, notes


def estimate_train(step: Any, plan: Any) -> dict[str, Any]:
    from harness.steps.train import build_config
    from trainers.engine import steps_for

    payload = step.payload
    cfg = build_config(payload, None, validate_only=True)
    examples, approx, notes = training_examples(payload.data, payload, plan.loaded.base_dir)
    if cfg.max_steps is not None:
        steps = cfg.max_steps
    elif examples is not None:
        steps = steps_for(examples, cfg.batch_size, cfg.epochs or 1.0)
    else:
        return {"unknown": True, "examples": None, "gpu_hours": None,
                "summary": f"no estimate: {'; '.join(notes)} (set max_steps, or max_examples on the source)"}
    per_example = cfg.query_max_length + (1 + cfg.hard_negatives) * cfg.passage_max_length
    tokens = steps * cfg.batch_size * per_example
    est: dict[str, Any] = {"examples": examples, "examples_approx": approx, "steps": steps, "batch_size": cfg.batch_size,
                           "tokens_per_example_max": per_example, "tokens": tokens}
    size = _train_base_params(step, plan)
    lora = cfg.lora is not None
    head = (f"{steps:,} steps{' (examples approx.)' if approx else ''} × {cfg.batch_size:,} examples × "
            f"≤{per_example:,} tokens = {_big(tokens)} tokens")
    if size is None:
        est.update(unknown=True, gpu_hours=None, summary=f"{head}; no GPU estimate (base model size unknown offline)",
                   assumptions="; ".join(notes))
        return est
    n, where = size
    factor = 4 if lora else 6
    flops = factor * n * tokens
    mfu, anchor = train_mfu(cfg)
    fp32 = cfg.precision == "fp32"
    peak = PEAK_FP32 if fp32 else PEAK_BF16
    hours = flops / (mfu * peak) / 3600
    est.update(params=n, flops=flops, mfu=mfu, gpu_hours=hours)
    est["summary"] = (f"{head}; {factor}·N·tokens (N={_big(n)}) = {flops:.3g} FLOP ≈ {_gpu_time(hours)} "
                      f"at MFU {mfu:g}{' of the fp32 peak' if fp32 else ''}")
    est["assumptions"] = "; ".join([
        f"every text at its max length (upper bound); N from {where}",
        f"{'LoRA: frozen base, no weight gradients' if lora else 'full fine-tune (the MFU anchors were measured with LoRA)'}",
        f"MFU {mfu:g} = docs/benchmarks.md '{anchor}' on one {GPU}"
        + (" (measured in bf16; fp32 taken at the 67 TFLOP/s fp32 peak)" if fp32 else ""),
        *notes])
    return est


# --- evaluate -------------------------------------------------------------------------------------

def _stat_groups(split_stats: dict[str, Any]) -> list[tuple[float, float]]:
    """(distinct texts, mean characters) of each text column in one split's mteb statistics."""
    groups = []
    for key, value in split_stats.items():
        if not key.endswith("_statistics") or not isinstance(value, dict) or "total_text_length" not in value:
            continue
        n = value.get("unique_texts") or split_stats.get("num_samples") or 0
        mean = value.get("average_text_length") or (value["total_text_length"] / n if n else 0.0)
        groups.append((float(n), float(mean)))
    return groups


def _classifier_training(task: Any, split_stats: dict[str, Any], groups: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """mteb's classification evaluator embeds only the union of its undersampled training sets:
    at most n_experiments × samples_per_label × labels of the train split."""
    labels = (split_stats.get("label_statistics") or {}).get("unique_labels")
    n = split_stats.get("num_samples")
    if not labels or not n:
        return groups
    cap = getattr(task, "n_experiments", 10) * getattr(task, "samples_per_label", 8) * labels
    return [(min(count, count * cap / n), mean) for count, mean in groups]


def _stats_groups(task: Any, splits: list[str], subsets: list[str]) -> list[tuple[float, float]] | None:
    stats = task.metadata.descriptive_stats
    if not stats:
        return None
    splits = list(splits)
    train = getattr(task, "train_split", None)
    classifier = str(task.metadata.type) == "Classification" and train and train in stats and train not in splits
    if classifier:
        splits.append(train)
    groups: list[tuple[float, float]] = []
    for split in splits:
        s = stats.get(split)
        if not s:
            return None
        per_subset = s.get("hf_subset_descriptive_stats") or {}
        chosen = ([per_subset[sub] for sub in subsets]
                  if per_subset and set(subsets) <= set(per_subset) and set(subsets) != set(per_subset) else [s])
        for part in chosen:
            found = _stat_groups(part)
            groups += _classifier_training(task, part, found) if classifier and split == train else found
    return groups


def _hub_profile(rt: Any) -> tuple[list[tuple[float, float]], str] | None:
    groups = _stats_groups(rt.task, rt.splits, rt.subsets)
    if groups is not None:
        return groups, "mteb descriptive_stats (distinct texts)"
    subtasks = getattr(rt.task.metadata, "tasks", None) or []  # an aggregate task (e.g. CQADupstackRetrieval)
    if not subtasks:
        return None
    groups = []
    for sub in subtasks:
        found = _stats_groups(sub, [s for s in sub.metadata.eval_splits if s in rt.splits] or list(sub.metadata.eval_splits),
                              list(sub.hf_subsets))
        if found is None:
            return None
        groups += found
    return groups, f"mteb descriptive_stats of its {len(subtasks)} subtasks (distinct texts)"


def _local_profile(rt: Any) -> tuple[list[tuple[float, float]], str] | None:
    from harness.evaluation import local_data
    from harness.evaluation.tasks import _subset_dir

    groups: list[tuple[float, float]] = []

    def add(path: Path | None, texts_per_line: int = 1) -> None:
        if path is None or not path.is_file():
            return
        lines, size = _count_lines(path)
        if lines:
            groups.append((float(lines * texts_per_line), size / (lines * texts_per_line)))

    ttype = rt.task_type
    if ttype == "BitextMining":
        files = local_data.bitext_subsets(rt.data_dir)
        for sub in rt.subsets:
            add(files.get(sub), 2)
        return groups, "local files (line counts; sizes include JSON keys)"
    for sub in rt.subsets:
        folder = _subset_dir(rt, sub)
        if ttype in ("Retrieval", "Reranking"):
            add(local_data.find_file(folder, "corpus"))
            queries = local_data.find_file(folder, "queries")
            if queries is not None:  # the queries judged in the evaluated splits (the file may hold train queries too)
                lines, size = _count_lines(queries)
                judged = set().union(*(_judged_queries(folder / "qrels" / f"{split}.tsv") for split in rt.splits))
                if lines and judged:
                    groups.append((float(min(len(judged), lines)), size / lines))
        elif ttype == "STS":
            for split in rt.splits:
                add(local_data.find_file(folder, split), 2)
        elif ttype == "Classification":
            for split in dict.fromkeys([*rt.splits, rt.task.train_split]):
                add(local_data.find_file(folder, split))
    return groups, "local files (line counts; sizes include JSON keys)"


_PROFILES: dict[tuple[Any, ...], Any] = {}  # one plan's tasks, shared by its model entries (cleared per estimate)


def task_profile(rt: Any) -> tuple[list[tuple[float, float]], str] | None:
    """(distinct texts, mean characters) groups of what a task encodes, and where the numbers come from."""
    key = (rt.name, tuple(rt.subsets), tuple(rt.splits), str(rt.data_dir))
    if key not in _PROFILES:
        _PROFILES[key] = _local_profile(rt) if rt.data_dir is not None else _hub_profile(rt)
    return _PROFILES[key]


def estimate_evaluate(step: Any, plan: Any) -> dict[str, Any]:
    cell = step.payload
    mp, rt = cell.model, cell.task
    profile = task_profile(rt)
    if profile is None:
        return {"unknown": True, "gpu_hours": None,
                "summary": f"no estimate: mteb ships no descriptive statistics for {rt.name}"}
    groups, source = profile
    decision = mp.resolved.decision if mp.resolved is not None else None
    max_len = mp.spec.max_length or (decision.max_seq_length if decision else None) or 512
    texts = sum(n for n, _ in groups)
    tokens = sum(n * min(mean / CHARS_PER_TOKEN, max_len) for n, mean in groups)
    est: dict[str, Any] = {"texts": round(texts), "tokens": round(tokens), "max_length": max_len}
    head = f"{_big(texts)} texts, {_big(tokens)} tokens"
    if mp.backend == "openai":
        est.update(gpu_hours=0.0, summary=f"{head} sent to the embeddings API (not priced here)")
        return est
    size = _plan_params(mp, plan)
    if size is None:
        est.update(unknown=True, gpu_hours=None, summary=f"{head}; no GPU estimate (model size unknown offline)")
        return est
    n, where = size
    fp32 = mp.spec.dtype == "float32"
    flops = 2 * n * tokens
    hours = flops / (ENCODE_MFU * (PEAK_FP32 if fp32 else PEAK_BF16)) / 3600
    est.update(params=n, flops=flops, mfu=ENCODE_MFU, gpu_hours=hours)
    est["summary"] = (f"{head}; 2·N·tokens (N={_big(n)}) ≈ {_gpu_time(hours)} at MFU {ENCODE_MFU:g}"
                      + (" of the fp32 peak (dtype: float32)" if fp32 else ""))
    est["assumptions"] = (f"texts from {source}; tokens = min(chars/{CHARS_PER_TOKEN:g}, max_length {max_len}); "
                          f"N from {where}; encode anchor ../shared/NOTES.md (bf16, length-sorted, adapters merged)"
                          + ("; measured in bf16, fp32 taken at the 67 TFLOP/s fp32 peak" if fp32 else "")
                          + "; embedding-cache hits not subtracted")
    return est
