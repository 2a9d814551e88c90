"""What a model *is*, for step keys and cache keys: content, not names.

- a local directory: the full-content fingerprint of its files (see :mod:`contentid`);
  with ``gguf_file`` only the chosen quantization counts (two quantizations in one folder differ,
  and adding a third does not change the first two);
- a LoRA adapter directory (``adapter_config.json``): the adapter's files *and* its base model's
  identity, because the adapter alone does not say what model it modifies;
- a hub id: the id and the commit it resolves to now (a moving ``main`` is a new model);
- an OpenAI-compatible model: the model name and the base URL it resolves to (the same name on
  two servers is two models).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError
from contentid import content_fingerprint, directory_fingerprint, file_digest
from harness.evaluation.models.reference import ModelReference
from trainers.hub import hub_cache_dir, hub_offline

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class ModelIdentity:
    content: str  # hashed into step keys and embedding-cache fingerprints
    hub_commit: str | None = None  # the resolved commit for hub models (load exactly this)
    gguf_file: str | None = None  # the chosen GGUF file for GGUF decoders
    base_url: str | None = None  # the resolved endpoint for OpenAI-compatible models


def resolve_openai_base_url(base_url_env: str) -> str:
    """The URL the ``openai`` client will call: the named variable, else OPENAI_BASE_URL, else OpenAI's."""
    return os.environ.get(base_url_env) or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL


def resolve_hub_commit(repo_id: str, revision: str | None, source: str | Path | None, field: str) -> str:
    """The commit a hub id (at ``revision``, default ``main``) points to.

    A full commit hash is taken as is. Otherwise the local hub cache's ``refs/<revision>`` answers
    (offline-friendly: that is the commit ``from_pretrained`` will load), else the hub is asked.
    """
    rev = revision or "main"
    if _SHA.fullmatch(rev):
        return rev
    from huggingface_hub import constants

    cache = Path(hub_cache_dir() or constants.HF_HUB_CACHE)
    ref_file = cache / f"models--{repo_id.replace('/', '--')}" / "refs" / rev
    if ref_file.is_file():
        return ref_file.read_text().strip()
    if not hub_offline():
        try:
            from huggingface_hub import HfApi

            sha = HfApi().model_info(repo_id, revision=rev).sha
            if sha:
                return str(sha)
        except Exception as exc:  # network, auth or not found: one clear error below
            detail = f" ({type(exc).__name__})"
        else:
            detail = ""
    else:
        detail = " (HF_HUB_OFFLINE is set)"
    raise InputError(source, field, f"cannot resolve hub model {repo_id!r} at revision {rev!r} to a commit: it is not in the "
                     f"local hub cache and the hub did not answer{detail}",
                     "download it first (huggingface-cli download), pin 'revision:' to a commit hash, or use a local path")


def select_gguf(path: Path, gguf_file: str | None, source: str | Path | None, field: str) -> str | None:
    """The GGUF file a decoder loads from ``path``: the named one, or the only one present."""
    if gguf_file is not None:
        if path.is_dir() and not (path / gguf_file).is_file():
            raise InputError(source, field, f"{path / gguf_file} does not exist", "name a .gguf file inside the model folder")
        return gguf_file
    if not path.is_dir() or (path / "config.json").exists():
        return None
    found = sorted(p.name for p in path.glob("*.gguf"))
    if len(found) > 1:
        raise InputError(source, field, f"{len(found)} GGUF files in {path}", "name one with gguf_file:")
    return found[0] if found else None


def _adapter_base(path: Path, source: str | Path | None, field: str) -> str | None:
    """Identity of the base model a LoRA adapter directory modifies (None if not an adapter)."""
    cfg_path = path / "adapter_config.json"
    if not cfg_path.is_file():
        return None
    try:
        adapter_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        base, base_revision = adapter_cfg.get("base_model_name_or_path"), adapter_cfg.get("revision")
    except ValueError as exc:
        raise InputError(cfg_path, None, f"not valid JSON ({exc})", "fix or re-export the adapter") from None
    if not base:
        raise InputError(cfg_path, "base_model_name_or_path", "missing: the adapter alone does not identify the model",
                         "set it to the base model's local path or hub id")
    local = Path(base).expanduser()
    if not local.is_absolute():
        local = (path / local) if (path / local).exists() else local
    if local.exists():
        return f"path:{content_fingerprint(str(local.resolve()))}"
    return f"hub:{base}@{resolve_hub_commit(base, base_revision, cfg_path, 'base_model_name_or_path')}"


def model_identity(ref: ModelReference, *, gguf_file: str | None = None, revision: str | None = None,
                   base_url_env: str = "OPENAI_BASE_URL", source: str | Path | None = None,
                   field: str = "model") -> ModelIdentity:
    """Resolve a reference to its content identity (see the module docstring)."""
    if ref.kind == "openai":
        url = resolve_openai_base_url(base_url_env)
        return ModelIdentity(content=f"openai:{ref.value}@{url}", base_url=url)
    if ref.kind == "hub":
        commit = resolve_hub_commit(ref.value, revision, source, field.replace(".model", ".revision") if revision else field)
        return ModelIdentity(content=f"hub:{ref.value}@{commit}", hub_commit=commit, gguf_file=gguf_file)
    path = Path(ref.value)
    if path.is_file():
        return ModelIdentity(content=f"file:{file_digest(path)}")
    gguf = select_gguf(path, gguf_file, source, field.replace(".model", ".gguf_file"))
    if gguf is not None:
        others = frozenset(p.name for p in path.glob("*.gguf") if p.name != gguf)
        return ModelIdentity(content=f"gguf:{gguf}:{directory_fingerprint(path, exclude=others)}", gguf_file=gguf)
    content = f"path:{directory_fingerprint(path)}"
    base = _adapter_base(path, source, field)
    if base is not None:
        content += f"+base:{base}"
    return ModelIdentity(content=content)
