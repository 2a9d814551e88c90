"""Matrix model entry -> Embedder. The one place that decides which backend a reference gets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import ModelSpec
from harness.errors import InputError
from harness.models.base import Embedder
from harness.models.reference import ModelReference, resolve_reference


def detect_kind(ref: ModelReference, spec: ModelSpec) -> str:
    """sentence-transformers directories have ``modules.json``; GGUF files or causal-LM configs are decoders."""
    if spec.kind != "auto":
        return spec.kind
    if ref.kind == "openai":
        return "openai"
    if spec.gguf_file:
        return "decoder"
    path = ref.path
    if path is not None:
        if (path / "modules.json").is_file():
            return "sentence-transformers"
        if any(path.glob("*.gguf")):
            return "decoder"
        cfg = path / "config.json"
        if cfg.is_file():
            arch = " ".join(json.loads(cfg.read_text()).get("architectures") or [])
            if "CausalLM" in arch:
                return "decoder"
    return "sentence-transformers"


def load_embedder(spec: ModelSpec, base_dir: Path, source: str | Path | None = None, device: str | None = None) -> Embedder:
    ref = resolve_reference(spec.model, base_dir, source, field=f"models[{spec.name}].model")
    kind = detect_kind(ref, spec)
    if kind == "openai":
        from harness.models.openai_embedder import OpenAIEmbedder

        name = ref.value if ref.kind == "openai" else spec.model
        return OpenAIEmbedder(spec.name, name, base_url_env=spec.base_url_env, api_key_env=spec.api_key_env,
                              batch_size=spec.batch_size, dimensions=spec.dimensions)
    if kind == "decoder":
        from harness.models.decoder import DecoderEmbedder

        gguf = spec.gguf_file
        if gguf is None and ref.path is not None and not (ref.path / "config.json").exists():
            found = sorted(ref.path.glob("*.gguf"))
            if len(found) == 1:
                gguf = found[0].name
            elif found:
                raise InputError(source, f"models[{spec.name}].gguf_file", f"{len(found)} GGUF files in {ref.path}", "name one with gguf_file:")
        return DecoderEmbedder(spec.name, ref, gguf_file=gguf, dtype=spec.dtype, max_length=spec.max_length or 512,
                               batch_size=spec.batch_size, normalize=True if spec.normalize is None else spec.normalize,
                               device=device)
    from harness.models.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(spec.name, ref, dtype=spec.dtype, max_length=spec.max_length,
                                       batch_size=spec.batch_size, normalize=spec.normalize, device=device)


def instruction_mode(spec: ModelSpec, embedder: Any) -> str:
    """``auto``: E5 template for decoders, the model's own saved prompts for sentence-transformers."""
    if spec.instructions != "auto":
        return spec.instructions
    backend = type(embedder).__name__
    if backend == "DecoderEmbedder":
        return "e5"
    if backend == "SentenceTransformerEmbedder":
        return "model-prompts"
    return "none"
