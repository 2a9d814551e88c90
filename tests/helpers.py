"""Small test helpers: run the CLI in-process and read results back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner


def cli(*args: str) -> Any:
    from harness.cli import full_app

    return CliRunner().invoke(full_app(), list(args), catch_exceptions=False)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject)


def _reject(token: str) -> Any:
    raise ValueError(f"non-strict JSON constant {token}")


def main_scores(run_dir: Path, *, with_revision: bool = False) -> dict[tuple[str, ...], float]:
    """(model dir[, revision], task, split, subset) -> main score, from every task file under results/."""
    out = {}
    for f in sorted((run_dir / "results").glob("*/*/*.json")):
        if f.name == "model_meta.json":
            continue
        obj = read_json(f)
        model = (f.parts[-3], f.parts[-2]) if with_revision else (f.parts[-3],)
        for split, rows in obj["scores"].items():
            for row in rows:
                out[(*model, obj["task_name"], split, row["hf_subset"])] = row["main_score"]
    return out


def require(available: bool, what: str) -> None:
    """Skip on a user's machine when an optional dependency is absent; in CI (``CI`` set) fail instead.

    A CI run that silently skips the browser, xgrammar or the real-data tests proves nothing about
    them, so there a missing dependency is a failure.
    """
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide {what}")
    pytest.skip(f"{what} not available")
