"""Matrix model entry -> Embedder. The one place that decides which backend a reference gets.

:func:`resolve_model` runs at plan time (identity for the step key, backend decision for
``harness plan``) and its result is handed to :func:`load_embedder`, so the planner, the cache
keys and the loaded model can never disagree about what the model is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.schema import ModelSpec
from harness.errors import InputError
from harness.evaluation.models.backend import BackendDecision, decide_backend
from harness.evaluation.models.base import Embedder
from harness.evaluation.models.identity import ModelIdentity, model_identity
from harness.evaluation.models.reference import ModelReference, resolve_reference


@dataclass(frozen=True)
class ResolvedModel:
    """What an entry's model is and how it is loaded, decided once: where it is, its content
    identity and its backend. Made at plan time (:func:`resolve_model`; a trained model's once its
    export exists) and handed to :func:`load_embedder`, so what is loaded is what was keyed."""

    ref: ModelReference
    identity: ModelIdentity
    decision: BackendDecision


def _check_settings(spec: ModelSpec, ref: ModelReference, source: str | Path | None) -> None:
    """Settings that would silently do nothing for this kind of reference are errors."""
    if spec.revision is not None and ref.kind != "hub":
        raise InputError(source, f"models[{spec.name}].revision",
                         f"'revision:' pins a hub model's commit, but {spec.model!r} is a {ref.kind} reference",
                         "remove it: local and API models are identified by their content, and results revisions are "
                         "always content-derived")
    if spec.gguf_file is not None and ref.kind == "openai":
        raise InputError(source, f"models[{spec.name}].gguf_file", "gguf_file does not apply to an API model", "remove it")


def resolve_model(spec: ModelSpec, base_dir: Path, source: str | Path | None = None) -> ResolvedModel:
    """Reference, content identity and backend decision of one matrix entry (raises InputError)."""
    field = f"models[{spec.name}].model"
    ref = resolve_reference(spec.model, base_dir, source, field=field)
    _check_settings(spec, ref, source)
    identity = model_identity(ref, gguf_file=spec.gguf_file, revision=spec.revision, base_url_env=spec.base_url_env,
                              source=source, field=field)
    decision = decide_backend(ref, kind=spec.kind, pooling=spec.pooling, gguf_file=identity.gguf_file,
                              hub_commit=identity.hub_commit, source=source, field=field)
    if spec.pooling != "auto" and decision.backend == "openai":
        raise InputError(source, f"models[{spec.name}].pooling", "an API model's pooling is the server's",
                         "remove 'pooling:' for openai: models")
    if spec.pooling == "last-token" and decision.backend == "sentence-transformers":
        raise InputError(source, f"models[{spec.name}].pooling",
                         "last-token pooling runs on the decoder path (explicit EOS), but kind: sentence-transformers is set",
                         "remove 'kind: sentence-transformers' (auto routes it) or choose mean/cls pooling")
    return ResolvedModel(ref=ref, identity=identity, decision=decision)


def load_embedder(spec: ModelSpec, base_dir: Path, source: str | Path | None = None, device: str | None = None,
                  resolved: ResolvedModel | None = None, cache_dir: Path | None = None) -> Embedder:
    """The embedder for one matrix entry. ``cache_dir`` is where run-level caches live (the run
    folder's ``cache``): a trainer export with a GGUF base finds or rebuilds the base's dense copy
    there, never under ``~/``. Tokens per forward pass are the machine's to choose
    (:func:`~harness.evaluation.models.batching.default_token_budget`), not the entry's."""
    rm = resolved or resolve_model(spec, base_dir, source)
    ref, ident, decision = rm.ref, rm.identity, rm.decision
    if decision.backend == "openai":
        from harness.evaluation.models.openai_embedder import OpenAIEmbedder

        name = ref.value if ref.kind == "openai" else spec.model
        return OpenAIEmbedder(spec.name, name, base_url=ident.base_url, api_key_env=spec.api_key_env,
                              batch_size=spec.batch_size, dimensions=spec.dimensions, content=ident.content)
    if decision.backend == "decoder":
        from harness.evaluation.models.decoder import DecoderEmbedder

        normalize = spec.normalize if spec.normalize is not None else (decision.normalize if decision.normalize is not None else True)
        return DecoderEmbedder(spec.name, ref, content=ident.content, gguf_file=ident.gguf_file, revision=ident.hub_commit,
                               subfolder=decision.transformer_path, dtype=spec.dtype,
                               max_length=spec.max_length or decision.max_seq_length or 512,
                               pooling="last-token" if spec.pooling == "auto" else spec.pooling,
                               batch_size=spec.batch_size, normalize=normalize, device=device, cache_dir=cache_dir)
    from harness.evaluation.models.sentence_transformer import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(spec.name, ref, content=ident.content, revision=ident.hub_commit, dtype=spec.dtype,
                                       max_length=spec.max_length, batch_size=spec.batch_size, normalize=spec.normalize,
                                       pooling=None if spec.pooling == "auto" else spec.pooling, device=device,
                                       cache_dir=cache_dir)


def instruction_mode(spec: ModelSpec, backend: str) -> str:
    """``auto``: E5 template for decoders, the model's own saved prompts for sentence-transformers."""
    if spec.instructions != "auto":
        return spec.instructions
    return {"decoder": "e5", "sentence-transformers": "model-prompts"}.get(backend, "none")

