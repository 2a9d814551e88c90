"""DeepSpeed ZeRO-3 (CPU, gloo) trains like the plain engine, resumes, and exports every weight.

The training test runs ZeRO-3 on 2 processes under torchrun, so every weight, gradient and
optimizer state really is split in two: the export must gather the halves, and the checkpoint
holds one partition per rank. The gradient probe runs in one process (it reads DeepSpeed's
gradients between backward and step, which is simplest without a second rank).

Why these tolerances: ZeRO-3 runs linear layers through its own autograd function, so gradients
differ from plain PyTorch's by float rounding (measured ~1e-6 absolute on gradients up to ~1).
AdamW then amplifies rounding on elements whose gradient is near zero (it divides each element by
its own magnitude), so weights differ by up to a fraction of ``lr`` per step; at lr 2e-5 the loss
curves agree to ~6e-5 over 3 steps (measured), hence 1e-4. The gradient probe has no optimizer in
the way and is held to 1e-4 of the largest gradient element; a GradCache that overwrote instead of
accumulated would miss all but the last mini-batch's contribution (a difference of order 1).
LoRA dropout is 0 here: with dropout each rank draws its own masks, which one process cannot
reproduce (exact resume with dropout is tested in test_trainers_resume.py, engine-independent).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_fixtures import (adapter_key, max_state_diff, pairs_data, run_checked, run_training,
                                    scifact_pairs, subprocess_env, tiny_config, write_config)

pytestmark = pytest.mark.slow

LOSS_TOL = 1e-4
LR = 2e-5


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deepspeed")


@pytest.fixture(scope="module")
def pairs(workdir: Path) -> Path:
    return scifact_pairs(workdir / "pairs.jsonl")


def _cfg(pairs: Path, output: Path, **kw: Any) -> dict[str, Any]:
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    return tiny_config(pairs_data(pairs), output, learning_rate=LR, lora=lora, save_every=1, **kw)


def test_zero3_gradcache_gradient_equals_full_batch_gradient(workdir: Path, pairs: Path) -> None:
    """Per step, DeepSpeed's reduced gradient after GradCache's 2-text passes (each a ZeRO-3
    ``backward(scale_wrt_gas=False)``, all but the last off the accumulation boundary) equals plain
    autograd's gradient of the whole batch. (The full-batch ZeRO-3 path is the loss-curve test below.)"""
    mini_batch = 2
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    cfg = tiny_config(pairs_data(pairs), workdir / f"probe-{mini_batch}", learning_rate=1e-3, lora=lora)
    config = write_config(cfg, workdir / f"probe-{mini_batch}.yaml")
    result = workdir / f"probe-{mini_batch}.json"
    run_checked([sys.executable, "-m", "tests.trainer_probe", str(config), str(mini_batch), str(result)],
                subprocess_env(workdir))
    steps = json.loads(result.read_text())
    assert len(steps) == 3
    for s in steps:
        print(s)
        assert s["grad_max_abs"] > 1e-3
        assert s["grad_max_diff"] <= 1e-4 * s["grad_max_abs"]
        assert abs(s["ref_loss"] - s["ds_loss"]) <= 1e-5


def test_zero3_matches_plain_resumes_and_exports_every_weight(workdir: Path, pairs: Path) -> None:
    plain = run_training(_cfg(pairs, workdir / "plain"), workdir, "plain")
    ds_out = workdir / "zero3"
    ds = run_training(_cfg(pairs, ds_out, deepspeed={"stage": 3}), workdir, "zero3", nproc=2)
    print(f"plain {plain['losses']} ({plain['wall']:.0f}s)\nzero3 {ds['losses']} ({ds['wall']:.0f}s)")

    # same loss curve as the plain engine
    assert len(ds["losses"]) == 3 and ds["processes"] == 2
    partitions = sorted(p.name for p in (ds_out / "checkpoints" / "step-000003" / "state").iterdir())
    assert [p for p in partitions if p.endswith("optim_states.pt")] == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    assert max(abs(a - b) for a, b in zip(plain["losses"], ds["losses"])) <= LOSS_TOL
    assert max_state_diff(plain["trainable"], ds["trainable"]) <= 0.5 * LR * 3
    # metrics.jsonl: ZeRO-3's global gradient norm (DeepSpeed's own) is the plain engine's, tokens summed over ranks
    assert [m["tokens"] for m in ds["metrics"]] == [m["tokens"] for m in plain["metrics"]]
    assert all(m["grad_norm"] is not None for m in ds["metrics"])
    assert [m["grad_norm"] for m in ds["metrics"]] == pytest.approx([m["grad_norm"] for m in plain["metrics"]], rel=1e-3)

    # the export holds every LoRA weight, equal to the gathered ZeRO-3 parameters
    trainable = ds["trainable"]
    assert sum("lora_A" in k for k in trainable) == sum("lora_B" in k for k in trainable) == 2 * 30
    assert all(v.numel() > 0 for v in trainable.values())  # gathered, not ZeRO-3's empty placeholders
    assert max_state_diff(ds["adapter"], {adapter_key(k): v for k, v in trainable.items()}) == 0.0
    assert max(float(v.abs().max()) for k, v in ds["adapter"].items() if "lora_B" in k) > 0

    # resume: drop the last checkpoint and the export, re-run, land on the same weights and losses
    shutil.rmtree(ds_out / "checkpoints" / "step-000003")
    shutil.rmtree(ds_out / "model")
    resumed = run_training(_cfg(pairs, ds_out, deepspeed={"stage": 3}), workdir, "zero3-resumed", nproc=2)
    print(f"resumed {resumed['losses']} from step {resumed['resumed_from']} ({resumed['wall']:.0f}s)")
    assert resumed["resumed_from"] == 2
    assert resumed["losses"] == ds["losses"]
    assert [(m["step"], m["loss"], m["grad_norm"]) for m in resumed["metrics"]] == [
        (m["step"], m["loss"], m["grad_norm"]) for m in ds["metrics"]]  # step 3 once, as before
    assert max_state_diff(resumed["trainable"], ds["trainable"]) == 0.0
    assert max_state_diff(resumed["adapter"], ds["adapter"]) == 0.0
