"""Parameter counts read from model files without loading them: GGUF tensors, safetensors headers.

The generation estimate needs a local generator's size (its time scales with it) and may not import
the harness, whose cost estimates need the same counts for the models they train and evaluate; so
the readers live here and the harness imports them. Counts leave out the LM head (the anchors they
are scaled by count the model without it).
"""

from __future__ import annotations

import json
import math
import struct
from functools import cache
from pathlib import Path


def safetensors_params(path: Path) -> int:
    """Elements of every tensor in a safetensors file (header only), the LM head excluded."""
    with Path(path).open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items()
               if k != "__metadata__" and k.split(".")[0] != "lm_head")


def gguf_params(path: Path) -> int:
    """Elements of every tensor in a GGUF file, the LM head (``output.weight``) excluded."""
    st = Path(path).stat()
    return _gguf_params_of(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@cache
def _gguf_params_of(path: str, size: int, mtime_ns: int) -> int:
    """Memoised per file version: reading a GGUF header walks every tensor (seconds per call)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return sum(int(t.n_elements) for t in reader.tensors if t.name != "output.weight")


def local_model_params(spec: str) -> tuple[float, str] | None:
    """(parameters, where they were read) of a local generator model (`pkg:`, .gguf or folder); None if unreadable."""
    from generators.backends.local_backend import resolve_model
    from generators.errors import BackendUnavailableError

    try:
        directory, gguf = resolve_model(spec)
    except BackendUnavailableError:
        return None
    if gguf:
        return float(gguf_params(directory / gguf)), f"GGUF tensors of {gguf}"
    files = sorted(directory.rglob("*.safetensors"))
    if files:
        return float(sum(safetensors_params(f) for f in files)), "safetensors headers"
    return None
