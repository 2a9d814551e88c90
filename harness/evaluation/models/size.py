"""How many parameters a model has, read offline: what every GPU-hour estimate is made of.

N is the parameter count of the model as loaded for embedding (no LM head; embedding table
included, as the MFU anchors count it), read from local files (safetensors headers, GGUF tensors),
the local hub cache, mteb's model registry, or a small table of known bases; None when none of
them knows (the estimate then says so rather than guess).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from trainers.hub import hub_cache_dir
from generators.model_size import gguf_params, safetensors_params  # the one reader of model files' sizes

# Bases whose size cannot be read offline (hub ids not in the local hub cache nor in mteb's registry).
KNOWN_PARAMS: dict[str, float] = {
    # 32 layers × 218,112,000 + 131,072,000 embedding + 4,096 norm; 7.24e9 with the LM head
    "mistralai/Mistral-7B-v0.1": 7_110_660_096,
}


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
    cache_dir = hub_cache_dir()
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
        return float(KNOWN_PARAMS[ref.value]), "known size (harness/evaluation/models/size.py)"
    return None
