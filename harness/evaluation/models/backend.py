"""Which backend a model gets, decided from the model's own files and recorded with the reason.

A name is not enough: an E5-style sentence-transformers export (``modules.json`` with a Pooling
module in last-token mode, as ``trainers/`` writes and as intfloat/e5-mistral-7b-instruct ships)
must go through the decoder path (explicit EOS, last attended token, E5 template), and a hub
causal LM must not silently get mean pooling through sentence-transformers. The decision reads
``modules.json``, the Pooling config, ``config.json`` architectures and the saved prompts, from a
local directory or the local hub cache, and is shown by ``harness plan`` and written into every
result's provenance.

Offline (``HF_HUB_OFFLINE=1``), a hub model whose files are not in the local hub cache has nothing to
read. Then mteb's model registry (shipped with mteb, no network) is asked how mteb itself loads the
model, and the decision says so (``guessed``: the planner repeats it as a note); a model mteb does
not know is assumed to be a sentence-transformers model, with a note naming ``kind:`` as the way to
say otherwise. A run that can read the files decides from them again.

Online, a download that fails for want of a connection is retried a few times; a hub that stays
unreachable is an :class:`InputError` naming the model and the ways out. It is never a quiet switch
to guessing: the decision is part of every evaluate step's key, so a guess made because one download
failed would silently change the identity of this model, and of every model planned after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import InputError
from trainers.hub import hub_cache_dir, hub_offline
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
    guessed: bool = False  # decided without the model's own files (offline, not cached); the reason says from what

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("guessed")  # the reason already differs; keys of decisions made from files stay as they were
        return out


HUB_TRIES = 3
"""Downloads of one file before the hub counts as unreachable (huggingface_hub retries inside each)."""
HUB_BACKOFF_S = 1.0
"""Pause before the second try; doubled before each later one."""


def _reader(ref: ModelReference, commit: str | None, source: str | Path | None = None,
            field: str | None = None) -> Any:
    """A function ``relpath -> parsed JSON or None`` over a local directory or the local hub cache
    (downloading what is missing, unless offline)."""

    def read_local(rel: str) -> Any:
        p = Path(ref.value) / rel
        return _load(p) if p.is_file() else None

    def read_hub(rel: str) -> Any:
        from huggingface_hub import try_to_load_from_cache

        cache_dir = hub_cache_dir()
        hit = try_to_load_from_cache(ref.value, rel, revision=commit, cache_dir=cache_dir)
        if isinstance(hit, str):
            return _load(Path(hit))
        if hit is not None or hub_offline():  # known absent from the repo, or the hub must not be asked
            return None
        return _download(ref.value, rel, commit, cache_dir, source, field)

    return read_local if ref.kind == "path" else read_hub


def _download(repo_id: str, rel: str, commit: str | None, cache_dir: str | None, source: str | Path | None,
              field: str | None) -> Any:
    """One file of a hub model, parsed; None when the repository has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    for attempt in range(HUB_TRIES):
        if attempt:
            time.sleep(HUB_BACKOFF_S * 2 ** (attempt - 1))
        try:
            return _load(Path(hf_hub_download(repo_id, rel, revision=commit, cache_dir=cache_dir)))
        except LocalEntryNotFoundError:  # no connection (or the hub is down), and not in the cache
            continue
        except Exception:  # noqa: BLE001 - absent file (or another hub error): the file simply is not there
            return None
    raise InputError(source, field or f"model {repo_id!r}",
                     f"the Hugging Face Hub could not be reached to read {rel} of {repo_id} ({HUB_TRIES} tries), and "
                     "which backend the model gets is decided from its files",
                     "retry when the hub is reachable; or set HF_HUB_OFFLINE=1 to plan from mteb's model registry "
                     "(the run re-decides from the files; see README 'The paper's matrix'); or download the model "
                     "and give its local path in 'model:'")


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
                   hub_commit: str | None = None, source: str | Path | None = None,
                   field: str | None = None) -> BackendDecision:
    """The backend for a model and why (see the module docstring for the rules).

    ``source``/``field`` (the matrix file and the entry's field) are what an unreachable hub's
    :class:`InputError` names; without them it names the model id."""
    if ref.kind == "openai":
        return BackendDecision("openai", "openai: reference")
    if ref.kind == "path" and Path(ref.value).is_file():
        return BackendDecision("decoder" if kind == "auto" else kind, "a single model file (GGUF)")  # type: ignore[arg-type]
    read = _reader(ref, hub_commit, source, field)
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
    raw_cfg = read("config.json")
    cfg = raw_cfg or {}
    arch = " ".join(cfg.get("architectures") or [])
    if "CausalLM" in arch:
        return BackendDecision("decoder", f"config.json architecture {arch}: decoder LLM, last-token pooling on an explicit EOS")
    if pooling == "last-token":
        return BackendDecision("decoder", "pooling: last-token set in the matrix")
    if ref.kind == "hub" and raw_cfg is None:
        return _offline_hub_decision(ref.value)
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


def _offline_hub_decision(repo_id: str) -> BackendDecision:
    """No file of a hub model could be read (offline and not cached): ask mteb's model registry."""
    unread = "neither modules.json nor config.json is in the local hub cache or downloadable now"
    try:
        import mteb

        meta = mteb.get_model_meta(repo_id, fetch_from_hf=False)
    except Exception:  # noqa: BLE001 - not in mteb's registry (KeyError), or an mteb without this signature
        meta = None
    if meta is not None:
        loader = getattr(meta.loader, "__name__", str(meta.loader))
        kwargs = dict(getattr(meta, "loader_kwargs", None) or {})
        template = str(kwargs.get("instruction_template") or "")
        if kwargs.get("add_eos_token") or template.startswith("Instruct:"):
            return BackendDecision("decoder", f"{unread}; mteb's model registry loads it with {loader} (E5 instruction "
                                   "template, EOS appended): decoder path (last-token pooling on an explicit EOS) — "
                                   "decided offline, the run re-decides from the files", "last-token", guessed=True)
        if "Sentence Transformers" in (getattr(meta, "framework", None) or []):
            return BackendDecision("sentence-transformers", f"{unread}; mteb's model registry loads it as a "
                                   f"sentence-transformers model ({loader}) — decided offline, the run re-decides "
                                   "from the files", guessed=True)
    return BackendDecision("sentence-transformers", f"{unread}, and mteb's model registry does not know it: assumed "
                           "sentence-transformers (set 'kind: decoder' on the entry if it is a decoder LLM)", guessed=True)
