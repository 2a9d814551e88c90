"""Export: a sentence-transformers directory that evaluation loads like any other model.

Layout: the backbone (LoRA adapter by default, merged weights on request) and the tokenizer in
the root, ``modules.json`` with Transformer -> Pooling -> Normalize, the E5 query prompts in
``config_sentence_transformers.json``, a model card (``README.md``) and ``training.json`` with
the machine-readable facts (base, data counts, steps, hyper-parameters, final loss, git commit).

The weights written are the *gathered* trainable parameters loaded into a fresh CPU copy of the
base, so an export made under ZeRO-3 holds every LoRA weight (a known failure of ZeRO-3
checkpoints is adapters that silently come out empty). The directory is assembled under a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from atomicio import atomic_directory, atomic_write_json, atomic_write_text
from trainers.backbone import BaseModel, load_backbone
from trainers.templates import E5_TEMPLATE, e5_prefix

MODEL_DIR = "model"


def _pooling_config(dim: int, mode: str) -> dict[str, Any]:
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": mode == "lasttoken",
        "include_prompt": True,
    }


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str = "backbone.") -> dict[str, torch.Tensor]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def rebuild_trained_backbone(base: BaseModel, trainable: dict[str, torch.Tensor], lora: Any | None) -> Any:
    """A fresh CPU copy of the base with the trained parameters loaded (every one of them, checked)."""
    backbone = load_backbone(base, "float32")
    if lora is not None:
        from trainers.backbone import add_lora

        backbone = add_lora(backbone, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                            target_modules=lora.target_modules, config_path=None)
    named = dict(backbone.named_parameters())
    state = _strip_prefix(trainable)
    missing = sorted(set(state) - set(named))
    if missing:
        raise RuntimeError(f"trained parameters not found in the rebuilt model: {missing[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            named[name].copy_(value.to(named[name].dtype))
    return backbone


def export_model(*, base: BaseModel, tokenizer: Any, trainable: dict[str, torch.Tensor], lora: Any | None,
                 merge: bool, pooling: str, normalize: bool, max_length: int, instructions: dict[str, str],
                 use_e5: bool, out_dir: Path, card: dict[str, Any]) -> Path:
    """Write the trained model to ``out_dir`` (replacing an older export atomically); returns it."""
    backbone = rebuild_trained_backbone(base, trainable, lora)
    with atomic_directory(out_dir) as tmp:
        if lora is not None and merge:
            backbone = backbone.merge_and_unload()
        backbone.save_pretrained(tmp)
        if lora is not None and not merge:
            # peft records the base by the path it was loaded from; make that explicit and durable.
            cfg_path = tmp / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["base_model_name_or_path"] = base.load_path
            if base.revision is not None:
                cfg["revision"] = base.revision  # peft's field: the base commit the adapter was trained on
            atomic_write_json(cfg_path, cfg)
        tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").unlink(missing_ok=True)
        dim = int(backbone.config.hidden_size)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (tmp / "2_Normalize").mkdir()
        atomic_write_json(tmp / "modules.json", modules)
        atomic_write_json(tmp / "1_Pooling" / "config.json", _pooling_config(dim, pooling))
        atomic_write_json(tmp / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
        prompts: dict[str, str] = {}
        if use_e5:
            prompts = {name: e5_prefix(text) for name, text in sorted(instructions.items()) if text}
            prompts["document"] = ""
            if instructions:
                prompts.setdefault("query", e5_prefix(next(iter(sorted(instructions.items())))[1]))
        atomic_write_json(tmp / "config_sentence_transformers.json",
                          {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine",
                           "model_type": "SentenceTransformer"})
        card = {**card, "instruction_template": E5_TEMPLATE if use_e5 else None, "pooling": pooling,
                "normalize": normalize, "eos_appended_by_tokenizer": pooling == "lasttoken",
                "weights": "merged" if (lora is None or merge) else "lora-adapter"}
        atomic_write_json(tmp / "training.json", card)
        atomic_write_text(tmp / "README.md", model_card_markdown(card))
    return out_dir


def model_card_markdown(card: dict[str, Any]) -> str:
    """The human-readable card: what was trained from what, on which data, for how long."""
    hp = card.get("hyperparameters", {})
    counts = card.get("data", {}).get("counts", {})
    lines = [
        f"# {card.get('name') or 'e5-harness trained embedder'}", "",
        f"Fine-tuned from `{card.get('base_model')}` with the e5-harness trainer (E5 recipe).", "",
        "| what | value |", "|---|---|",
        f"| base model | `{card.get('base_model')}` |",
        f"| weights | {card.get('weights')} |",
        f"| pooling | {card.get('pooling')} (EOS appended by the tokenizer: {card.get('eos_appended_by_tokenizer')}) |",
        f"| instruction template | `{(card.get('instruction_template') or 'none')!r}` on queries only |",
        f"| steps | {card.get('steps')} |",
        f"| final loss | {card.get('final_loss')} |",
        f"| data fingerprint | `{card.get('data', {}).get('fingerprint')}` |",
        f"| git commit | `{(card.get('git') or {}).get('commit')}` |", "",
        "## Data mixture", "", "| source | examples |", "|---|---|",
        *[f"| {name} | {n} |" for name, n in counts.items()], "",
        "## Hyper-parameters", "", "```json", json.dumps(hp, indent=2, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)
