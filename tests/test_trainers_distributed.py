"""Two processes train exactly like one process on the same global batch (gloo, CPU).

The fast test spawns 2 gloo processes on a random-weight Llama and compares, on one batch of 8
split 4 + 4, the reported loss (the global mean) and the averaged LoRA gradients with one
process's on all 8, with and without GradCache: the cached gradients of the documents a rank
gathered from the other must flow back to the rank that encoded them. The slow tests below run
whole trainings under torchrun on SmolLM2.

Each rank takes its half of ``mixture.batch(step, batch_size, seed)``, embeds it, and scores its
queries against the documents of *both* ranks (``gather_with_grad``); the plain engine averages the
gradients. If any piece were wrong (a rank scoring only its own documents, labels not offset by
rank, gradients summed instead of averaged, the other rank's document gradients dropped by the
gather) the per-step losses would differ from one process's at the 1e-2 level, not 1e-6.

The trained weights are compared at a looser tolerance on purpose: AdamW divides each gradient
element by its own running magnitude, so an element whose gradient is ~1e-8 (LoRA weights barely
used by a 16-token batch) turns a 1e-7 float-summation difference into an update difference of
up to ``2*lr``. Measured after 3 steps at lr 1e-3: 2.9e-5, against LoRA B weights that moved
2e-3 from zero.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer_fixtures import (adapter_key, max_state_diff, pairs_data, random_tokens, run_training, scifact_pairs,
                                    tiny_config, tiny_lora_encoder)

GLOBAL_BATCH, WORLD = 8, 2
IN_BATCH = [True] * 5 + [False] + [True] * 2  # one classification-style row, on rank 1: its mask uses global labels

LOSS_TOL = 2e-5  # measured 3.3e-6 (full batch) and 8.1e-6 (GradCache): logits are cos/0.02, so fp32
#                 rounding of the embeddings (other padding widths, other chunk shapes) shows up x50
WEIGHT_TOL = 1e-4  # 0.1 * lr, see the module docstring


def _examples() -> list[dict[str, dict[str, torch.Tensor]]]:
    """8 examples (query, positive, one hard negative) of ragged lengths, each padded to its own length."""
    parts = {role: random_tokens(GLOBAL_BATCH, width, seed, ragged=True)
             for role, width, seed in (("query", 12, 1), ("positive", 20, 2), ("negative", 20, 3))}
    return [{role: {k: v[i : i + 1, : int(t["attention_mask"][i].sum())] for k, v in t.items()} for role, t in parts.items()}
            for i in range(GLOBAL_BATCH)]


def _pad(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row, as a tokenizer pads a batch of this process's texts."""
    width = max(r["input_ids"].shape[1] for r in rows)
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    return {k: torch.cat([pad(r[k]) for r in rows]) for k in ("input_ids", "attention_mask")}


def _step(examples: list[dict[str, Any]], in_batch: list[bool], mini: int | None) -> tuple[float, dict[str, torch.Tensor]]:
    """One step on this process's examples through the trainer's own code: contrastive_step,
    PlainEngine's gradient averaging, the reported (global mean) loss."""
    from trainers.engine import PlainEngine
    from trainers.gradcache import ContrastiveBatch, contrastive_step
    from trainers.loss import global_mean

    encoder = tiny_lora_encoder(dropout=0.0)
    engine = PlainEngine(encoder, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=1, max_grad_norm=None,
                         device=torch.device("cpu"))
    batch = ContrastiveBatch(queries=_pad([e["query"] for e in examples]),
                             documents=_pad([e["positive"] for e in examples] + [e["negative"] for e in examples]),
                             in_batch=torch.tensor(in_batch))
    loss = contrastive_step(engine.forward, batch, engine.backward, temperature=0.02, mini_batch_size=mini,
                            device=torch.device("cpu"), autocast=contextlib.nullcontext)
    reported = float(global_mean(loss))
    engine.reduce_gradients()
    return reported, {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


def _rank(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    local = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    results = {str(mini): _step(_examples()[local], IN_BATCH[local], mini) for mini in (None, 1)}
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_of_4_equal_one_process_of_8_with_and_without_gradcache(tmp_path: Path) -> None:
    """Tolerance 1e-5 of the largest gradient element (as for GradCache): the same arithmetic, but each
    rank pads to its own longest text and sums its own partial gradients, so results differ by fp32
    rounding (measured: losses equal to 1e-6; gradients 1.2e-5 full batch, 2.9e-6 GradCache, on
    elements up to 10.4). Gathering the other rank's documents without their gradient path (a fault
    tried by hand) moves the gradients by 0.56; a rank reporting its own loss would be ~1e-1 off."""
    import torch.multiprocessing as mp

    mp.start_processes(_rank, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for mini in ("None", "1"):
        loss, grads = _step(_examples(), IN_BATCH, None if mini == "None" else 1)
        scale = max(float(g.abs().max()) for g in grads.values())
        assert loss > 1.0 and scale > 0.1 and len(grads) == 2 * 7 * 2
        for rank_loss, rank_grads in (r[mini] for r in ranks):
            assert abs(rank_loss - loss) <= 1e-5, (mini, rank_loss, loss)  # every rank reports the global mean
            assert set(rank_grads) == set(grads)
            worst = max(float((rank_grads[n] - grads[n]).abs().max()) for n in grads)
            print(f"mini {mini}: loss {loss:.6f} vs {rank_loss:.6f}; grads max |diff| {worst:.2e} (max |g| {scale:.2e})")
            assert worst <= 1e-5 * max(1.0, scale), (mini, worst, scale)


def test_nccl_between_gpus_gloo_between_cpu_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.distributed as dist

    from trainers import train as train_module

    assert train_module.process_group_backend(torch.device("cuda", 3)) == "nccl"
    assert train_module.process_group_backend(torch.device("cpu")) == "gloo"
    chosen: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: chosen.append(backend))  # records, joins nothing
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: chosen.append(str(device)))
    train_module._init_distributed(torch.device("cuda", 1))
    assert chosen == ["nccl", "cuda:1"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def single(workdir: Path) -> dict[str, Any]:
    pairs = scifact_pairs(workdir / "pairs.jsonl")
    return run_training(tiny_config(pairs_data(pairs), workdir / "single"), workdir, "single")


def _check_same_run(single: dict[str, Any], dist: dict[str, Any]) -> None:
    assert dist["processes"] == 2 and single["processes"] == 1
    assert len(dist["losses"]) == len(single["losses"]) == 3
    diffs = [abs(a - b) for a, b in zip(single["losses"], dist["losses"])]
    print(f"losses 1 proc {single['losses']}\nlosses 2 proc {dist['losses']}\nmax |diff| {max(diffs):.2e}")
    assert max(diffs) <= LOSS_TOL
    moved = max(float(v.abs().max()) for k, v in single["trainable"].items() if "lora_B" in k)
    weight_diff = max_state_diff(single["trainable"], dist["trainable"])
    print(f"weights max |diff| {weight_diff:.2e} (lora_B moved up to {moved:.2e}); wall {dist['wall']:.0f}s")
    assert moved > 10 * WEIGHT_TOL  # not vacuous: LoRA B starts at 0 and moved ~2e-3 (3 Adam steps)
    assert weight_diff <= WEIGHT_TOL
    exported = {adapter_key(k): v for k, v in dist["trainable"].items()}
    assert max_state_diff(dist["adapter"], exported) == 0.0  # rank 0 exported the trained weights
    # metrics.jsonl: the real tokens of both ranks summed (= one process's), the norm of the averaged gradients
    assert [m["step"] for m in dist["metrics"]] == [1, 2, 3]
    assert [m["tokens"] for m in dist["metrics"]] == [m["tokens"] for m in single["metrics"]]
    assert [m["grad_norm"] for m in dist["metrics"]] == pytest.approx([m["grad_norm"] for m in single["metrics"]], rel=1e-4)


@pytest.mark.slow
def test_two_processes_match_one_process(single: dict[str, Any], workdir: Path) -> None:
    pairs = workdir / "pairs.jsonl"
    dist = run_training(tiny_config(pairs_data(pairs), workdir / "two"), workdir, "two", nproc=2)
    _check_same_run(single, dist)


@pytest.mark.slow
def test_two_processes_with_gradcache_match_one_process(single: dict[str, Any], workdir: Path) -> None:
    """GradCache on top: each rank embeds its 2 queries / 4 documents one text at a time."""
    pairs = workdir / "pairs.jsonl"
    cfg = tiny_config(pairs_data(pairs), workdir / "two-gc", mini_batch_size=1)
    dist = run_training(cfg, workdir, "two-gc", nproc=2)
    _check_same_run(single, dist)
