"""The recipe is what runs: every batch gets exactly the hard negatives asked for (or the run is
refused before anything is written), a recipe whose loss cannot move is refused, texts are
padded to their own batch's longest, and execution settings left unset are chosen for the device.

A random-weight Llama with a real tokenizer and real SciFact pairs: steps of milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import cli
from tests.trainer_fixtures import pairs_data, scifact_pairs, tiny_llama, tiny_llama_config, write_config
from trainers.config import TrainConfig
from trainers.errors import TrainInputError
from trainers.examples import TrainExample


def _pairs_with_negatives(tmp_path: Path, counts: list[int]) -> Path:
    """SciFact pairs whose row ``i`` carries ``counts[i]`` real hard negatives (other rows' abstracts)."""
    rows = [json.loads(line) for line in scifact_pairs(tmp_path / "scifact.jsonl", n_queries=len(counts)).read_text().splitlines()]
    docs = [r["positive"] for r in rows]
    for i, (row, n) in enumerate(zip(rows, counts)):
        row["negatives"] = [docs[(i + j + 1) % len(docs)] for j in range(n)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _refused(tmp_path: Path, cfg: dict[str, Any], *expected: str) -> None:
    result = cli("train", str(write_config(cfg, tmp_path / "bad.yaml")), "--no-progress")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], lines[0]
    assert not Path(cfg["output"]).exists()


def test_every_batch_gets_exactly_the_hard_negatives_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, ``k = min(hard_negatives, fewest negatives in the batch)``: a recipe asking for 2 trained
    some batches on 1 (or 0) and training.json said 2. Now a short example is an input error naming
    its source and how many are short, and a run that starts uses k on every batch."""
    base = tiny_llama(tmp_path / "llama")
    counts = [2, 2, 1, 2, 2, 0, 2, 2]
    cfg = tiny_llama_config(pairs_data(_pairs_with_negatives(tmp_path, counts)), tmp_path / "out", base, hard_negatives=2)
    _refused(tmp_path, cfg, "hard_negatives", "2 of 8 examples of source 'scifact' have fewer than 2 hard negatives",
             "lower hard_negatives to 0", "mine more")

    from trainers import train as train_module

    seen: list[tuple[int, int]] = []
    real_step = train_module.contrastive_step

    def spy(encode: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:  # records, then runs the real step
        seen.append((batch.size, int(batch.documents["input_ids"].shape[0])))
        return real_step(encode, batch, *args, **kwargs)

    monkeypatch.setattr(train_module, "contrastive_step", spy)
    cfg = tiny_llama_config(pairs_data(_pairs_with_negatives(tmp_path, [3, 2] * 4)), tmp_path / "ok", base, hard_negatives=2)
    result = train_module.train(TrainConfig.model_validate(cfg), progress=False)
    assert seen == [(4, 4 * (1 + 2))] * 3  # 4 positives and 2 negatives each, on every step
    card = json.loads((result.model_dir / "training.json").read_text())
    assert card["hyperparameters"]["hard_negatives"] == 2


def test_sources_that_cannot_give_the_negatives_are_refused_before_reading_or_mining(tmp_path: Path) -> None:
    """Known from the config: a BEIR source set to mine fewer per query than the recipe uses, and a
    public source whose hub copy has no negatives column (ELI5's pairs): refused before any download,
    model load or mining pass, with the fix."""
    from trainers.data.mixture import check_negatives_possible
    from trainers.data.spec import DataSpec

    beir = DataSpec.model_validate({"sources": [{"kind": "beir", "path": "scifact", "negatives_per_query": 1}]})
    check_negatives_possible(beir, tmp_path, 1)
    with pytest.raises(TrainInputError, match=r"source 'scifact' mines 1 hard negative\(s\) per query.*Fix: set negatives_per_query: 2"):
        check_negatives_possible(beir, tmp_path, 2)
    hub = DataSpec.model_validate({"sources": [{"kind": "registry", "source": "msmarco-passage"},
                                               {"kind": "registry", "source": "eli5"}]})
    with pytest.raises(TrainInputError, match=r"source 'eli5' has no hard negatives .* Fix: set hard_negatives: 0"):
        check_negatives_possible(hub, tmp_path, 1)
    check_negatives_possible(hub, tmp_path, 0)
    check_negatives_possible(DataSpec.model_validate({"sources": [{"kind": "registry", "source": "msmarco-passage"}]}),
                             tmp_path, 1)


def test_a_recipe_whose_loss_cannot_move_is_refused(tmp_path: Path) -> None:
    base = tiny_llama(tmp_path / "llama")
    pairs = _pairs_with_negatives(tmp_path, [1] * 8)
    # one query per batch and no hard negative: its only candidate is its positive
    _refused(tmp_path, tiny_llama_config(pairs_data(pairs), tmp_path / "out", base, batch_size=1, hard_negatives=0),
             "batch_size 1 with hard_negatives 0", "the loss is constant")
    # classification-derived examples never see other rows' documents: with k = 0 only their positive
    from trainers.data.mixture import Mixture

    labels = Mixture({"cls": [TrainExample(f"text {i}", "positive", ("negative",), "", "cls", in_batch_negatives=False)
                              for i in range(8)]}, {"cls": 1.0})
    labels.check_negatives({"cls": 1})
    with pytest.raises(TrainInputError, match=r"source 'cls' has only examples without in-batch negatives .* loss is constant"):
        labels.check_negatives({"cls": 0})


def test_texts_are_padded_to_their_own_batch_not_to_max_length(tmp_path: Path) -> None:
    """Padding to max_length would make every step pay for the longest text allowed; queries and
    documents are tokenised separately, each to its own longest (and GradCache trims each mini-batch)."""
    from trainers.backbone import load_tokenizer, resolve_base
    from trainers.encoder import TextEncoder
    from trainers.gradcache import _chunks
    from trainers.reference import locate_model

    base = resolve_base(locate_model(str(tiny_llama(tmp_path / "llama")), tmp_path), gguf_file=None, pooling="auto",
                        cache_dir=tmp_path / "cache", config_path=None)
    encoder = TextEncoder(None, load_tokenizer(base, None), base.pooling, base.normalize)
    short = encoder.tokenize(["a cat", "a small black cat"], 128)
    assert short["input_ids"].shape == (2, 6)  # [CLS] a small black cat [SEP], not 128
    chunks = list(_chunks(encoder.tokenize(["a cat", "a small black cat", "dogs", "a dog"], 128), 2))
    assert [c["input_ids"].shape[1] for c in chunks] == [6, 4]


def test_execution_settings_left_unset_are_chosen_for_the_device(tmp_path: Path) -> None:
    from trainers.engine import adamw_implementation
    from trainers.execution import kept_blocks, resolve_execution

    cfg = TrainConfig.model_validate(tiny_llama_config(pairs_data(tmp_path / "p.jsonl"), tmp_path / "out", tmp_path))
    assert (cfg.compile, cfg.gradient_checkpointing, cfg.uncheckpointed_layers) == (None, None, None)
    cpu = resolve_execution(cfg, torch.device("cpu"), None, 2)
    assert (cpu.compile, cpu.gradient_checkpointing, cpu.uncheckpointed_layers) == (False, False, 0)  # CPU: auto is off
    explicit = cfg.model_copy(update={"compile": True, "gradient_checkpointing": True, "uncheckpointed_layers": 1})
    assert resolve_execution(explicit, torch.device("cpu"), None, 2).as_dict() == {
        "compile": True, "gradient_checkpointing": True, "uncheckpointed_layers": 1}
    # docs/benchmarks.md, one H200 (139.8 GiB), Mistral-7B shapes with bf16 weights (13.3 GiB), 64 examples
    # of 128 + 2 x 256 tokens: every block checkpointed 32.8 GiB peak, each block kept +5.34 GiB (8 kept:
    # 75.4, 12 kept: 96.8). The estimate keeps at least the measured best (12) and stays inside the card.
    tokens = 64 * (128 + 2 * 256)
    kept = kept_blocks(2**30 * (139.8 - 13.3), hidden=4096, layers=32, tokens=tokens)
    assert 12 <= kept < 32 and 32.8 + 5.34 * kept <= 0.9 * 139.8
    assert kept_blocks(2**30 * 10, hidden=4096, layers=32, tokens=tokens) == 0  # a small card: recompute every block
    # fused AdamW only where every trainable parameter lives on CUDA
    assert adamw_implementation([torch.nn.Parameter(torch.zeros(2))]) == {}


def test_a_source_without_negatives_says_so_and_the_others_keep_the_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch is one source's, so hard negatives are per source: a pairs-only source (ELI5, NQ,
    SQuAD as published) sets ``hard_negatives: 0`` and trains on in-batch negatives, while the
    source with negatives keeps the recipe's k — batch by batch, recorded in training.json."""
    from trainers import train as train_module
    from trainers.data.mixture import preset_sources
    from trainers.data.spec import DataSpec

    base = tiny_llama(tmp_path / "llama")
    with_neg = _pairs_with_negatives(tmp_path, [1] * 8)
    without = tmp_path / "bare.jsonl"
    without.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "negatives"}) + "\n"
                               for line in with_neg.read_text().splitlines()))
    data = {"sources": [{"kind": "pairs", "path": str(with_neg), "name": "mined"},
                        {"kind": "pairs", "path": str(without), "name": "bare"}]}
    cfg = tiny_llama_config(data, tmp_path / "refused", base, hard_negatives=1, max_steps=6)
    _refused(tmp_path, cfg, "8 of 8 examples of source 'bare' have fewer than 1 hard negatives")

    seen: list[int] = []
    real_step = train_module.contrastive_step

    def spy(encode: Any, batch: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(int(batch.documents["input_ids"].shape[0]) // batch.size - 1)  # negatives per example
        return real_step(encode, batch, *args, **kwargs)

    monkeypatch.setattr(train_module, "contrastive_step", spy)
    data["sources"][1]["hard_negatives"] = 0
    cfg = tiny_llama_config(data, tmp_path / "ok", base, hard_negatives=1, max_steps=6)
    result = train_module.train(TrainConfig.model_validate(cfg), progress=False)
    assert sorted(set(seen)) == [0, 1] and len(seen) == 6
    card = json.loads((result.model_dir / "training.json").read_text())
    assert card["data"]["hard_negatives"] == {"mined": 1, "bare": 0}
    # The paper's full preset has no per-source settings: its pairs-only sources declare 0 themselves.
    full = {s.source: s.hard_negatives for s in preset_sources(DataSpec.model_validate({"preset": "full"}), "data")}
    assert full["eli5"] == full["nq"] == full["squad"] == 0 and full["msmarco-passage"] is None
