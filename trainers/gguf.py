"""Dense copies of GGUF bases: dequantised once per GGUF file's bytes, shared by every process.

transformers dequantises a GGUF checkpoint into a model it refuses to train or save, so a GGUF
base is converted once into a plain fp32 directory and training (and evaluation of an adapter
trained on it) loads that. The conversion costs tens of seconds and gigabytes, so:

- the copy lives where the caller says (``cache_dir``: the run folder's ``cache/`` under the
  harness, so every node that sees the run folder sees it; nothing lives under ``~/``), under
  ``dense/<sha256 of the GGUF file>`` — two quantizations in one folder are two files, two copies;
- the digest is ``contentid.file_digest`` (memoised by path, size, mtime and inode), so finding an
  existing copy does not re-read a multi-gigabyte file;
- it is built under an exclusive ``flock`` on ``dense/.<sha>.lock`` (``atomicio.exclusive_lock``): a second process asking for
  the same copy waits, then finds it, instead of converting it a second time beside the first;
- it is assembled under a temporary name and renamed into place (a builder killed mid-way leaves
  ``.<sha>.tmp-*``, which the next builder, holding the lock, removes), and holds ``dense.json``
  (the GGUF's sha256 and file name, the transformers version that dequantised it), so a reader
  can check that a directory is the copy of the file it expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from atomicio import atomic_directory, atomic_write_json, discard, exclusive_lock
from contentid import file_digest
from modelload import model_loading

DENSE_DIR = "dense"
CACHE_DIR = "cache"  # a standalone run's caches (dense GGUF copies) when HARNESS_CACHE_DIR is unset


def standalone_cache_dir(output: Path) -> Path:
    """Caches of a training outside the harness: ``$HARNESS_CACHE_DIR``, else ``<output>/cache`` (never
    ``~/``). The harness always passes its run folder's cache instead."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env).expanduser() if env else Path(output) / CACHE_DIR
RECORD = "dense.json"


def dense_copy_record(directory: Path) -> dict[str, Any] | None:
    """The record of a finished dense copy (``gguf_sha256``, ``gguf_file``, ``transformers``), or None."""
    try:
        record = json.loads((directory / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and (directory / "config.json").is_file() else None


def _is_copy_of(directory: Path, digest: str) -> bool:
    record = dense_copy_record(directory)
    return record is not None and record.get("gguf_sha256") == digest


def _convert(gguf_path: Path, out: Path) -> None:
    """Dequantise into ``out``; clearing the quantizer marks lets ``save_pretrained`` work and the
    reloaded model gives identical logits (see ../shared/NOTES.md)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    with model_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kwargs)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def dense_copy_path(cache_dir: Path, gguf_sha256: str) -> Path:
    """Where the dense copy of the GGUF file with this digest lives (built or not)."""
    return Path(cache_dir) / DENSE_DIR / gguf_sha256


def dense_copy_of_gguf(gguf_path: Path, cache_dir: Path) -> Path:
    """The trainable fp32 directory of ``gguf_path``, built under ``cache_dir`` if it is not there yet."""
    import transformers

    gguf_path = Path(gguf_path)
    digest = file_digest(gguf_path)
    target = dense_copy_path(cache_dir, digest)
    if _is_copy_of(target, digest):
        return target
    with exclusive_lock(target.parent / f".{digest}.lock"):
        if _is_copy_of(target, digest):  # built by another process while we waited
            return target
        for abandoned in target.parent.glob(f".{digest}.tmp-*"):  # a builder killed mid-way (we hold the lock)
            discard(abandoned, abandoned)
        with atomic_directory(target) as tmp:
            _convert(gguf_path, tmp)
            atomic_write_json(tmp / RECORD, {"gguf_sha256": digest, "gguf_file": gguf_path.name,
                                             "transformers": transformers.__version__, "dtype": "float32"})
    return target
