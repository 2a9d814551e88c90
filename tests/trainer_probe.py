"""Gradient probe: does a DeepSpeed step (ZeRO-3, optionally GradCache) produce the full-batch gradient?

``python -m tests.trainer_probe CONFIG MINI_BATCH RESULT_JSON`` loads the config's model twice (the
DeepSpeed engine's, and a plain copy as the reference), then for each of ``max_steps`` real batches:
copies DeepSpeed's gathered weights into the copy, takes the plain full-batch gradient there, runs
the DeepSpeed step's forward/backward (GradCache with MINI_BATCH texts per pass, 0 = full batch),
reads DeepSpeed's gradient with ``safe_get_full_grad`` before the optimizer step, and records the
largest difference. Syncing weights each step means step ``k > 0`` also checks that the previous
step's gradient was cleared (an accumulation that leaks across steps would show up there).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from pathlib import Path

import torch

from trainers import train as T
from trainers.config import load_train_config
from trainers.data.mixture import build_mixture
from trainers.engine import DeepSpeedEngine
from trainers.gradcache import ContrastiveBatch, contrastive_step


def main(config_path: str, mini_batch: int, result_path: str) -> None:
    torch.set_num_threads(1)
    cfg = load_train_config(config_path)
    prep = T.prepare(cfg, config_path=Path(config_path))
    mixture = build_mixture(cfg.data, Path(config_path).parent, None, cfg.seed)
    reference = copy.deepcopy(prep.encoder)
    ds = DeepSpeedEngine(prep.encoder, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=0,
                         total_steps=cfg.max_steps or 1, max_grad_norm=None, stage=3, precision="fp32",
                         offload_optimizer=False, offload_params=False, micro_batch=cfg.batch_size)
    from deepspeed.utils import safe_get_full_grad

    ref_params = {n: p for n, p in reference.named_parameters() if p.requires_grad}
    ds_params = {n: p for n, p in ds.module.named_parameters() if p.requires_grad}
    assert set(ref_params) == set(ds_params) and ref_params
    reference.train()
    prep.encoder.train()
    steps = []
    for step in range(cfg.max_steps or 1):
        _, examples = mixture.batch(step, cfg.batch_size, cfg.seed)
        queries, docs, in_batch = T._batch_texts(examples, cfg.hard_negatives, prep.use_e5)
        batch = ContrastiveBatch(prep.encoder.tokenize(queries, cfg.query_max_length),
                                 prep.encoder.tokenize(docs, cfg.passage_max_length), torch.tensor(in_batch))
        with torch.no_grad():
            for name, value in ds.trainable_state().items():
                ref_params[name].copy_(value)
        for p in ref_params.values():
            p.grad = None
        ref_loss = contrastive_step(lambda b: reference(**b), batch, lambda loss, last: loss.backward(),
                                    temperature=cfg.temperature, mini_batch_size=None, device="cpu",
                                    autocast=contextlib.nullcontext)
        ds_loss = contrastive_step(ds.forward, batch, ds.backward, temperature=cfg.temperature,
                                   mini_batch_size=mini_batch or None, device="cpu", autocast=contextlib.nullcontext)
        diff = scale = 0.0
        for name, p in ref_params.items():
            g = safe_get_full_grad(ds_params[name])
            assert g is not None, f"DeepSpeed holds no gradient for {name}"
            diff = max(diff, float((g.float().cpu() - p.grad).abs().max()))
            scale = max(scale, float(p.grad.abs().max()))
        ds.step()
        steps.append({"ref_loss": float(ref_loss), "ds_loss": float(ds_loss), "grad_max_diff": diff, "grad_max_abs": scale})
        print(json.dumps(steps[-1]), file=sys.stderr, flush=True)
    Path(result_path).write_text(json.dumps(steps), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
