"""CLI commands whose logic lives in the libraries: report and gate (leaderboards), generate (generators).

Kept apart from :mod:`harness.cli` so evaluation commands import no library they do not use. The
libraries raise their own input-error types (they never import ``harness``); here each becomes
exit code 2 with its one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from harness.cli.app import _bad_input, _prepare_environment, app


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (or its results/ folder).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown | html | csv | json")] = "markdown",
    baselines: Annotated[Optional[list[str]], typer.Option("--baselines", help="Reference models, aliases (mE5, e5-mistral, openai, cohere, all, none) or results dirs; repeat or comma-separate.")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", help="Model that deltas and ranks are against (default: the run's first model).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report here instead of printing it.")] = None,
    compare: Annotated[Optional[tuple[str, str]], typer.Option("--compare", metavar="A B", help="Only the paired comparison of two models of the run: B against baseline A (name or name@revision).")] = None,
) -> None:
    """Leaderboards of a run beside reference baselines (MTEB categories, BEIR, per language)."""
    _prepare_environment()
    from leaderboards.commands import compare as compare_models
    from leaderboards.commands import report as build_report
    from leaderboards.errors import LeaderboardInputError

    try:
        text = compare_models(run_dir, *compare, fmt, output) if compare else build_report(run_dir, fmt, baselines, reference, output)
    except LeaderboardInputError as exc:
        _bad_input(exc)
    if output is None:
        typer.echo(text)
    else:
        typer.echo(f"wrote {output}")


@app.command()
def gate(
    baseline: Annotated[str, typer.Option("--baseline", help="Results directory or shipped reference model name, e.g. intfloat/multilingual-e5-large.")],
    candidate: Annotated[Path, typer.Option("--candidate", help="Run directory under test.")],
    max_drop: Annotated[float, typer.Option("--max-drop", help="Allowed drop of a main score (0-1 scale).")] = 0.01,
    per_task: Annotated[Optional[list[str]], typer.Option("--per-task", help="Override tolerance: Task=0.02, Task/subset=0.03 (repeatable).")] = None,
    allow_missing: Annotated[Optional[list[str]], typer.Option("--allow-missing", help="Task, Task/subset or glob that may be absent (repeatable).")] = None,
    require_tasks: Annotated[Optional[list[str]], typer.Option("--require-task", help="Task that must be present when gating against a reference name (repeatable).")] = None,
    candidate_model: Annotated[Optional[str], typer.Option("--candidate-model", help="name or name@revision when the run holds several models.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the paired test over queries.")] = 0.05,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="Also write the Markdown summary to this file.")] = None,
) -> None:
    """Fail (exit 1) when a score regresses beyond tolerance and beyond noise; exit 2 on bad input."""
    _prepare_environment()
    from leaderboards.commands import gate as run_gate
    from leaderboards.commands import parse_per_task
    from leaderboards.errors import LeaderboardInputError

    try:
        outcome = run_gate(baseline, candidate, max_drop=max_drop, per_task=parse_per_task(per_task or []),
                           allow_missing=allow_missing, require_tasks=require_tasks, candidate_model=candidate_model,
                           alpha=alpha, output=summary)
    except LeaderboardInputError as exc:
        _bad_input(exc)
    typer.echo(outcome.markdown)
    raise typer.Exit(outcome.exit_code)


@app.command()
def generate(
    config: Annotated[Path, typer.Argument(help="Generation config YAML (see examples/generate-offline.yaml).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide the progress bar.")] = False,
) -> None:
    """Synthetic training data (E5 two-step prompting) from an OpenAI-compatible or local LLM; resumable."""
    _prepare_environment()
    from generators.commands import generate_file as run_generate
    from generators.errors import GeneratorInputError

    from harness.third_party_output import progress_bars_hidden

    try:
        with progress_bars_hidden(no_progress):
            manifest = run_generate(config, output, progress=not no_progress)
    except GeneratorInputError as exc:
        _bad_input(exc)
    typer.echo(manifest.model_dump_json(indent=2))
