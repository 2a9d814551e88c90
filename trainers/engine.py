"""Who owns the weights, the optimizer and the gradient reduction: plain PyTorch or DeepSpeed.

Both engines expose the same four operations the step needs (forward, backward with an explicit
"last backward of this step" flag, step, checkpoint), so GradCache, the loss and the data order
are one code path whether a run is single-process, torchrun on several processes, or DeepSpeed
ZeRO-3. The plain engine averages gradients across processes itself (one flat all-reduce after
the last backward) instead of wrapping the model in DDP: with GradCache a step makes several
backward calls, and only the last one may synchronise.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from trainers.loss import world


def lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up then linear decay to zero (the E5 recipe's schedule)."""
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return max(0.0, (total_steps - step) / span)
    return factor


def rng_state() -> dict[str, Any]:
    """This process's random generators (dropout masks come from here; each rank has its own)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())] if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for d, s in enumerate(state.get("cuda") or []):
        torch.cuda.set_rng_state(s, d)


def adamw_implementation(params: list[torch.Tensor]) -> dict[str, bool]:
    """``fused=True`` when every trainable parameter is on CUDA: one kernel for the whole update
    instead of a few per parameter tensor (hundreds of LoRA tensors), same update rule."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


def total_grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all gradients together, on the device (no sync), as ``clip_grad_norm_`` computes it."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class PlainEngine:
    """Single process or torchrun: torch AdamW, manual gradient averaging, torch.save checkpoints."""

    def __init__(self, module: torch.nn.Module, *, lr: float, weight_decay: float, warmup_steps: int,
                 total_steps: int, max_grad_norm: float | None, device: torch.device) -> None:
        self.module = module.to(device)
        self.device = device
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay, **adamw_implementation(self.params))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(warmup_steps, total_steps))
        self.max_grad_norm = max_grad_norm

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module(**batch)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        loss.backward()

    def reduce_gradients(self) -> None:
        """Average the gradients over the processes (one flat all-reduce); a no-op in one process."""
        _, size = world()
        if size > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= size
            offset = 0
            for p, g in zip(self.params, grads):
                n = g.numel()
                p.grad = flat[offset : offset + n].view_as(g).clone()
                offset += n

    def step(self) -> torch.Tensor:
        """Average, clip, update; returns the total L2 norm of the averaged gradients before clipping,
        as a tensor on the device (reading it is the caller's sync to make, once per log window)."""
        self.reduce_gradients()
        if self.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            norm = total_grad_norm(self.params)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters by name, on CPU (LoRA weights, or all weights in a full fine-tune)."""
        return {n: p.detach().cpu().clone() for n, p in self.module.named_parameters() if p.requires_grad}

    def save(self, directory: Path, client_state: dict[str, Any]) -> None:
        rank, _ = world()
        if rank == 0:
            torch.save({"trainable": self.trainable_state(), "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(), "client": client_state},
                       directory / "state.pt")

    def load(self, directory: Path) -> dict[str, Any]:
        state = torch.load(directory / "state.pt", map_location="cpu", weights_only=False)
        named = dict(self.module.named_parameters())
        with torch.no_grad():
            for name, value in state["trainable"].items():
                named[name].copy_(value.to(named[name].device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state["client"]


class DeepSpeedEngine:
    """DeepSpeed (ZeRO 0-3) owns partitioning, reduction and the optimizer; we keep the step logic.

    GradCache maps onto DeepSpeed's manual accumulation boundary: every mini-batch backward but the
    last is marked "not a boundary", so ZeRO accumulates locally and reduces once per step.
    """

    def __init__(self, module: torch.nn.Module, *, lr: float, weight_decay: float, warmup_steps: int,
                 total_steps: int, max_grad_norm: float | None, stage: int, precision: str,
                 offload_optimizer: bool, offload_params: bool, micro_batch: int) -> None:
        import deepspeed

        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29500 + (os.getpid() % 1000)))
        for var, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            os.environ.setdefault(var, value)
        self.config = deepspeed_config(stage=stage, lr=lr, weight_decay=weight_decay, precision=precision,
                                       max_grad_norm=max_grad_norm, offload_optimizer=offload_optimizer,
                                       offload_params=offload_params, micro_batch=micro_batch)
        params = [p for p in module.parameters() if p.requires_grad]
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, model_parameters=params, config=self.config,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(warmup_steps, total_steps)))
        self.module = self.engine.module
        self.device = self.engine.device
        self.stage = stage

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.engine(**batch)

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> torch.Tensor | float | None:
        """DeepSpeed's step; returns its global gradient norm before clipping, or None where it computes
        none (ZeRO 0 in fp32, or ZeRO 1/2 with the norm turned off): recorded as unknown, never invented."""
        self.engine.set_gradient_accumulation_boundary(True)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return norm.detach().clone() if isinstance(norm, torch.Tensor) else norm  # DeepSpeed may reuse its tensor

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters gathered from their ZeRO-3 partitions onto every rank."""
        import deepspeed

        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None, enabled=self.stage == 3):
            return {n: p.detach().cpu().clone() for n, p in named}

    def save(self, directory: Path, client_state: dict[str, Any]) -> None:
        self.engine.save_checkpoint(str(directory), tag="state", client_state={"client": client_state},
                                    save_latest=False)

    def load(self, directory: Path) -> dict[str, Any]:
        path, state = self.engine.load_checkpoint(str(directory), tag="state", load_module_strict=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint in {directory}")
        return state["client"]


def deepspeed_config(*, stage: int, lr: float, weight_decay: float, precision: str, max_grad_norm: float | None,
                     offload_optimizer: bool, offload_params: bool, micro_batch: int) -> dict[str, Any]:
    """The generated DeepSpeed config (written beside the checkpoints for provenance)."""
    zero: dict[str, Any] = {"stage": stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if offload_params and stage == 3:
        zero["offload_param"] = {"device": "cpu"}
    _, size = world()
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "train_batch_size": micro_batch * max(size, 1),
        "zero_optimization": zero,
        "optimizer": {"type": "AdamW", "params": {"lr": lr, "weight_decay": weight_decay, "torch_adam": True}},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if max_grad_norm:
        cfg["gradient_clipping"] = max_grad_norm
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif precision == "fp16":
        cfg["fp16"] = {"enabled": True}
    return cfg


def steps_for(total_examples: int, batch_size: int, epochs: float) -> int:
    return max(1, math.ceil(total_examples * epochs / batch_size))
