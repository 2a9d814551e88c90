"""``harness train CONFIG``: the trainer library behind the harness's exit-code contract.

The logic lives in ``trainers`` (usable without the harness); this module only maps its
input errors (the trainer's, and the harness's for a recipe's ``eval_task``) to exit code 2 and adds the harness's provenance (package versions, git
commit) to the model card, which ``trainers`` cannot compute itself without importing ``harness``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from harness.cli.app import _bad_input, _prepare_environment, app
from inputio import InputProblem


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training config YAML (see examples/train-scifact-minilm.yaml and docs/training.md).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Training directory (default: config 'output:' or runs/train/<name>). Re-running resumes.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar or per-window log lines (metrics.jsonl is written either way).")] = False,
) -> None:
    """LoRA/contrastive training with the E5 recipe; writes a sentence-transformers model directory."""
    _prepare_environment()
    from harness.evaluation.dev_scorer import dev_scorer_for
    from harness.provenance import environment
    from harness.third_party_output import progress_bars_hidden
    from trainers.config import load_train_config
    from trainers.train import prepare
    from trainers.train import train as run_train

    try:
        with progress_bars_hidden(no_progress):
            cfg = load_train_config(config)
            scorer = dev_scorer_for(cfg, source=config.resolve())  # a bad eval_task fails here, before any training
            prepared = prepare(cfg, config_path=config.resolve(), output=output, dev_scorer=scorer)
            result = run_train(cfg, config_path=config.resolve(), prepared=prepared, provenance=environment(),
                               progress=not no_progress)
    except InputProblem as exc:  # the trainer's input errors, and the harness's (a recipe's eval_task)
        _bad_input(exc)
    final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    typer.echo(f"trained {result.steps} steps in {result.seconds:.0f} s (final loss {final}{resumed}) -> {result.model_dir}")
