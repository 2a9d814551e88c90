"""Which backend a model gets, decided from the model's own files and recorded with the reason.

A name is not enough: an E5-style sentence-transformers export (``modules.json`` with a Pooling
module in last-token mode, as ``trainers/`` writes and as intfloat/e5-mistral-7b-instruct ships)
must go through the decoder path (explicit EOS, last attended token, E5 template), and a hub
causal LM must not silently get mean pooling through sentence-transformers. The decision reads
``modules.json``, the Pooling config, ``config.json`` architectures and the saved prompts, from a
local directory or the local hub cache, and is shown by ``harness plan`` and written into every
result's provenance.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.evaluation.models.identity import hub_offline
from harness.evaluation.models.reference import ModelReference

Backend = Literal["sentence-transformers", "decoder", "openai"]
_POOLING_NAMES = {"lasttoken": "last-token", "mean": "mean", "cls": "cls", "max": "max",
                  "mean_sqrt_len_tokens": "mean_sqrt_len_tokens", "weightedmean": "weightedmean"}
_LEGACY = {"pooling_mode_lasttoken": "lasttoken", "pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
           "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
           "pooling_mode_weightedmean_tokens": "weightedmean"}


@dataclass(frozen=True)
class BackendDecision:
    backend: Backend
    reason: str
    pooling: str | None = None  # the model's own pooling ("last-token", "mean", "cls", ...), if it declares one
    normalize: bool | None = None  # a sentence-transformers Normalize module is present
    transformer_path: str = ""  # sub-folder of the Transformer module (weights and tokenizer)
    max_seq_length: int | None = None  # sentence_bert_config.json
    prompts: dict[str, str] = field(default_factory=dict)  # config_sentence_transformers.json

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _reader(ref: ModelReference, commit: str | None) -> Any:
    """A function ``relpath -> parsed JSON or None`` over a local directory or the local hub cache."""

    def read_local(rel: str) -> Any:
        p = Path(ref.value) / rel
        return _load(p) if p.is_file() else None

    def read_hub(rel: str) -> Any:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(ref.value, rel, revision=commit, cache_dir=os.environ.get("HF_HUB_CACHE") or None)
        if isinstance(hit, str):
            return _load(Path(hit))
        if hit is None and not hub_offline():
            try:
                from huggingface_hub import hf_hub_download

                return _load(Path(hf_hub_download(ref.value, rel, revision=commit, cache_dir=os.environ.get("HF_HUB_CACHE") or None)))
            except Exception:  # absent file or no network: the file simply is not there
                return None
        return None

    return read_local if ref.kind == "path" else read_hub


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def _pooling_of(cfg: dict[str, Any]) -> str | None:
    mode = cfg.get("pooling_mode")
    if mode is None:
        active = [name for key, name in _LEGACY.items() if cfg.get(key)]
        mode = active[0] if len(active) == 1 else (tuple(active) if active else None)
    if isinstance(mode, (list, tuple)):
        mode = mode[0] if len(mode) == 1 else "+".join(mode)
    return _POOLING_NAMES.get(mode, mode) if isinstance(mode, str) else None


def decide_backend(ref: ModelReference, *, kind: str = "auto", pooling: str = "auto", gguf_file: str | None = None,
                   hub_commit: str | None = None) -> BackendDecision:
    """The backend for a model and why (see the module docstring for the rules)."""
    if ref.kind == "openai":
        return BackendDecision("openai", "openai: reference")
    if ref.kind == "path" and Path(ref.value).is_file():
        return BackendDecision("decoder" if kind == "auto" else kind, "a single model file (GGUF)")  # type: ignore[arg-type]
    read = _reader(ref, hub_commit)
    st = _sentence_transformers_layout(read)
    if kind != "auto":
        return _with_layout(BackendDecision(kind, "kind: set in the matrix"), st)  # type: ignore[arg-type]
    if gguf_file or (ref.kind == "path" and any(Path(ref.value).glob("*.gguf"))):
        return BackendDecision("decoder", "GGUF weights: decoder LLM, last-token pooling on an explicit EOS")
    if st is not None:
        if st.pooling == "last-token" or pooling == "last-token":
            why = ("sentence-transformers export with last-token pooling" if st.pooling == "last-token"
                   else "pooling: last-token set in the matrix")
            return BackendDecision("decoder", f"{why}: E5 path (explicit EOS, last attended token, E5 template)",
                                   st.pooling, st.normalize, st.transformer_path, st.max_seq_length, st.prompts)
        return BackendDecision("sentence-transformers", f"modules.json with {st.pooling or 'no'} pooling",
                               st.pooling, st.normalize, st.transformer_path, st.max_seq_length, st.prompts)
    cfg = read("config.json") or {}
    arch = " ".join(cfg.get("architectures") or [])
    if "CausalLM" in arch:
        return BackendDecision("decoder", f"config.json architecture {arch}: decoder LLM, last-token pooling on an explicit EOS")
    if pooling == "last-token":
        return BackendDecision("decoder", "pooling: last-token set in the matrix")
    return BackendDecision("sentence-transformers", f"no modules.json; config.json architecture {arch or 'unknown'}: "
                           "sentence-transformers default (mean pooling)")


def _sentence_transformers_layout(read: Any) -> BackendDecision | None:
    modules = read("modules.json")
    if not isinstance(modules, list):
        return None
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: str(m.get("path", "")) for m in modules if isinstance(m, dict)}
    pool_cfg = read(f"{types['Pooling']}/config.json".lstrip("/")) if "Pooling" in types else None
    transformer_path = types.get("Transformer", "")
    bert_cfg = read(f"{transformer_path}/sentence_bert_config.json".lstrip("/")) or {}
    st_cfg = read("config_sentence_transformers.json") or {}
    prompts = st_cfg.get("prompts") if isinstance(st_cfg.get("prompts"), dict) else {}
    max_len = bert_cfg.get("max_seq_length")
    return BackendDecision("sentence-transformers", "", _pooling_of(pool_cfg) if isinstance(pool_cfg, dict) else None,
                           "Normalize" in types, transformer_path, int(max_len) if isinstance(max_len, int) else None,
                           {str(k): str(v) for k, v in prompts.items()})


def _with_layout(decision: BackendDecision, st: BackendDecision | None) -> BackendDecision:
    if st is None:
        return decision
    return BackendDecision(decision.backend, decision.reason, st.pooling, st.normalize, st.transformer_path,
                           st.max_seq_length, st.prompts)
