"""LoRA adapters at evaluation: on the exact base they were trained on, merged before encoding.

A trainer export records its base exactly (``trainers.export.resolve_export_base``); loading the
directory the usual way (transformers' or sentence-transformers' peft integration) would instead
read ``adapter_config.json``'s ``base_model_name_or_path`` and load whatever that path or hub
branch holds today, ignoring the commit. And unmerged adapters cost ~40% of encoding throughput
(NOTES) while changing nothing else, so every adapter is folded into its base weights and the plain
layers are put back before the first text is encoded.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainers.export import resolve_export_base
from modelload import model_loading
from trainers.hub import hub_cache_dir, hub_offline

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file()


def exact_base_dir(adapter_dir: Path, cache_dir: Path | None) -> str:
    """A local directory holding the adapter's exact base: the base itself, or the hub snapshot of
    the recorded commit (downloaded first when the hub may be asked)."""
    base = resolve_export_base(adapter_dir, cache_dir)  # a TrainInputError when it cannot be found as trained
    if base.revision is None and Path(base.load_path).is_dir():
        return base.load_path
    from huggingface_hub import snapshot_download

    return snapshot_download(base.load_path, revision=base.revision, cache_dir=hub_cache_dir(),
                             local_files_only=hub_offline(),
                             ignore_patterns=["onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "flax_model*", "tf_model*"])


@contextlib.contextmanager
def adapter_view(adapter_dir: Path, base_dir: str) -> Iterator[Path]:
    """The adapter directory as seen through links, its ``adapter_config.json`` naming ``base_dir``.

    sentence-transformers owns its loading (modules, tokenizer, prompts) and loads an adapter's base
    from ``adapter_config.json``; this view is how it is handed the exact base without rewriting the
    export. Only needed while loading: the view is removed afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="adapter-view-") as tmp:
        view = Path(tmp)
        for item in adapter_dir.iterdir():
            if item.name != ADAPTER_CONFIG:
                (view / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
        cfg = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = base_dir
        cfg.pop("revision", None)  # the view's base is a local directory: nothing to pin
        (view / ADAPTER_CONFIG).write_text(json.dumps(cfg), encoding="utf-8")
        yield view


def merge_lora(model: Any) -> int:
    """Fold every LoRA layer of ``model`` into its base weight and put the plain layer back, in place.

    Works for a ``PeftModel`` and for a model whose adapters transformers' peft integration injected;
    returns how many layers were merged (0 when there are none).
    """
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return 0
    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, module.get_base_layer())
            merged += 1
    return merged


def load_merged_adapter(adapter_dir: Path, cache_dir: Path | None, **model_kwargs: Any) -> tuple[Any, int]:
    """``AutoModel`` of the adapter's exact base with the adapter applied by peft and merged.

    Returns the plain (adapter-free) model and the number of merged layers.
    """
    from peft import PeftModel
    from transformers import AutoModel

    base = resolve_export_base(adapter_dir, cache_dir)  # a TrainInputError when it cannot be found as trained
    with model_loading():
        model = AutoModel.from_pretrained(base.load_path, revision=base.revision, cache_dir=hub_cache_dir(), **model_kwargs)
        wrapped = PeftModel.from_pretrained(model, str(adapter_dir))
    merged = merge_lora(wrapped)
    return wrapped.get_base_model(), merged
