"""Generate steps: a generation config run by ``generators`` into the step's work directory.

Keyed by the config's canonical content (not its file bytes: a comment or key order does not
change the data), so one synthetic set feeds every model trained on it. The generator's response
store lives in the work directory, which survives a kill: a re-run answers every finished LLM call
from it and only asks for the rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.steps.base import GENERATE, Step

CODE_VERSION = "1"
OUTPUT = "output"  # the generator's output folder inside the step directory (examples.jsonl, manifest.json)


def plan_generate(name: str, config_path: Path, matrix_path: Path, field: str) -> Step:
    """Validate the generation config now (bad input fails before anything runs) and key it."""
    from generators.config import load_config
    from generators.errors import GeneratorInputError

    if not config_path.is_file():
        raise InputError(matrix_path, field, f"generation config {config_path} does not exist",
                         "fix the path (relative to the matrix file)")
    from generators.identity import generation_identity

    try:
        cfg = load_config(config_path)
        identity = generation_identity(cfg, config_path)
    except GeneratorInputError as exc:
        raise InputError(matrix_path, field, f"invalid generation config ({exc})", "fix the generation config") from None
    params = {"config": identity}
    return Step(kind=GENERATE, label=f"generate {name}", params=params, inputs=[], code_version=CODE_VERSION,
                payload={"name": name, "config": config_path, "cfg": cfg})


def examples_path(step_dir: Path) -> Path:
    """Where a finished generate step's examples are (what a ``generated`` mixture source reads)."""
    return step_dir / OUTPUT


def run_generate(step: Step, work: Path, *, progress: bool) -> dict[str, Any]:
    from generators.commands import generate

    start = time.monotonic()
    cfg = step.payload["cfg"]  # the object the key was computed from; the file is not read again
    manifest = generate(cfg, work / OUTPUT, responses=cfg.store or work.parents[2] / "cache" / "responses",
                        progress=progress, source=step.payload["config"])
    return {"kept": manifest.kept, "counts": manifest.counts, "rejects": manifest.rejects,
            "cost_usd": manifest.cost_usd, "examples": f"{OUTPUT}/{manifest.examples_file}",
            "seconds": round(time.monotonic() - start, 3)}
