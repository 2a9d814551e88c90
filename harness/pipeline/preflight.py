"""Checks of the world outside the matrix that a run depends on, made before anything is written.

The schema can say that ``cache_dir`` is a path, not that the path is a folder; the CLI can take
``--device cuda:0`` or ``--devices cuda:0,cuda:1``, not know that this torch has no CUDA, or one GPU. Found late, each of these became a
traceback or a run that wrote cache, logs and run.json and then failed every cell. Each check
here raises one :class:`InputError` (exit 2) naming the setting and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from atomicio import directory_target_problem
from harness.schema import LoadedMatrix, ModelSpec
from harness.errors import InputError


def check_output_dir(output: Path, option: str, source: Path | None = None) -> None:
    """The run directory must be a folder or creatable as one (not an existing file)."""
    problem = directory_target_problem(output)
    if problem:
        raise InputError(source, option, f"run directory {output} {problem}",
                         "choose a folder path (an existing run folder is fine: finished cells are reused)")


def check_cache_dir(loaded: LoadedMatrix) -> None:
    """``cache_dir:`` / ``HARNESS_CACHE_DIR`` (embeddings) and ``llm_cache:`` / ``HARNESS_LLM_CACHE``
    (LLM responses) must be folders or creatable as ones."""
    for env_name, field_name, value, inside in (
            ("HARNESS_CACHE_DIR", "cache_dir", loaded.matrix.cache_dir, "the cache file inside is embeddings.sqlite"),
            ("HARNESS_LLM_CACHE", "llm_cache", loaded.matrix.llm_cache, "one file per LLM response is kept inside")):
        env = os.environ.get(env_name)
        if env:
            where, source, path = env_name, None, Path(env).expanduser()
        elif value is not None:
            where, source, path = field_name, loaded.path, loaded.resolve(value)
        else:
            continue
        problem = directory_target_problem(path)
        if problem:
            raise InputError(source, where, f"cache folder {path} {problem}",
                             f"point it at a folder (it is created if missing); {inside}")


def check_api_keys(loaded: LoadedMatrix) -> None:
    """An ``openai:`` model needs its key variable set, or every cell fails with "Connection error"."""
    for i, spec in enumerate(loaded.matrix.models):
        if not _is_openai(spec):
            continue
        if not os.environ.get(spec.api_key_env):
            raise InputError(loaded.path, f"models[{i}] (name: {spec.name}).api_key_env",
                             f"environment variable {spec.api_key_env} is not set",
                             f"export {spec.api_key_env}=<your key> (any non-empty value for a local server that ignores it), "
                             "or name another variable with api_key_env")


def _is_openai(spec: ModelSpec) -> bool:
    return spec.kind == "openai" or (spec.model or "").startswith("openai:")


def check_device(device: str | None, option: str = "--device") -> None:
    """``--device`` (or one entry of ``--devices``) must name a torch device this machine has
    (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(None, option, f"{device!r} is not a torch device",
                         f"use cpu, cuda, cuda:N or mps (or omit {option} to pick automatically)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(None, option, f"{device!r} requested but this torch has no usable CUDA device "
                             f"(torch {torch.__version__})", f"omit {option} or use cpu; on a GPU machine install a CUDA build of torch")
        if dev.index is not None and dev.index >= count:
            raise InputError(None, option, f"{device!r} requested but only {count} CUDA device(s) exist",
                             f"use cuda:0 .. cuda:{count - 1}")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(None, option, "'mps' requested but MPS is not available here", f"omit {option} or use cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(None, option, f"{device!r} is not supported by the harness", "use cpu, cuda, cuda:N or mps")


def check_devices(devices: str | None, *, device: str | None = None, executor: str = "local") -> tuple[str, ...]:
    """``--devices`` (``cuda:0,cuda:1``; ``cpu,cpu`` works too): the devices, each one this machine has.

    Not with ``--device`` (two answers to one question), and not with the Ray executor, which already
    gives every evaluate unit a GPU of its own and runs units side by side; a single entry is
    ``--device``.
    """
    if devices is None:
        return ()
    if device is not None:
        raise InputError(None, "--devices", "--device and --devices are both given",
                         "use one: --devices cuda:0,cuda:1 spreads encoding over several devices; --devices cuda:0 is --device cuda:0")
    names = tuple(d.strip() for d in devices.split(","))
    if "" in names:
        raise InputError(None, "--devices", f"{devices!r} has an empty entry",
                         "list torch devices separated by commas, e.g. cuda:0,cuda:1 (or cpu,cpu)")
    if executor == "ray" and len(names) > 1:
        raise InputError(None, "--devices", "the Ray executor gives each evaluate unit one GPU of its own (Ray sets "
                         "CUDA_VISIBLE_DEVICES) and runs units side by side; --devices spreads one unit over this machine's devices",
                         "drop --devices with --executor ray, or run with the local executor")
    for name in names:
        check_device(name, "--devices")
    return names


EXECUTORS = ("local", "ray")


def check_executor(executor: str, address: str | None) -> None:
    """``--executor`` must be one the harness has; ``--address`` only means something to Ray."""
    if executor not in EXECUTORS:
        import difflib

        close = difflib.get_close_matches(executor, EXECUTORS, n=1)
        raise InputError(None, "--executor", f"unknown executor {executor!r}",
                         f"use {close[0]!r}" if close else f"use one of: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise InputError(None, "--address", "--address is the Ray cluster's address, but the executor is local",
                         "add '--executor ray', or drop --address")
