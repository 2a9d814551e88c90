"""The ``harness`` command line.

Exit codes are part of the interface (CI scripts depend on them): 0 all done, 1 some cells failed
(or a gate found a regression), 2 bad input. Bad input is always detected before anything is
written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.plan import Plan

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Benchmark harness for LLM-based text embedders.")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _quiet_environment() -> None:
    os.environ.setdefault("MTEB_CACHE", str(Path.home() / ".cache" / "harness" / "mteb"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import warnings

    warnings.filterwarnings("ignore")
    from harness.quiet import warn_superseded_once

    warn_superseded_once()
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _echo_error(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)


def _bad_input(exc: Exception) -> NoReturn:
    """The one way any command reports bad input: one red line on stderr and exit code 2."""
    _echo_error(exc)
    raise typer.Exit(EXIT_BAD_INPUT)


def _matrix_path(file: Optional[Path], example: Optional[str]) -> Path:
    from harness.examples import example_path

    if (file is None) == (example is None):
        raise InputError(None, "FILE", "give either a matrix FILE or --example NAME", "e.g. 'harness run matrix.yaml' or 'harness run --example smoke'")
    return example_path(example) if example else file  # type: ignore[return-value]


FileArg = Annotated[Optional[Path], typer.Argument(help="Matrix YAML file.")]
ExampleOpt = Annotated[Optional[str], typer.Option("--example", help="A matrix shipped with the package (see 'harness ls examples').")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Run directory (default: matrix 'output:' or runs/<name>).")]


def _echo_data_notes(p: "Plan") -> None:
    """What loading changed in the data (e.g. qrels dropped on request): said once, before any work."""
    for rt in p.tasks:
        for note in rt.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)


@app.command()
def validate(file: FileArg = None, example: ExampleOpt = None) -> None:
    """Check a matrix: schema, task names, subsets, data folders and every data file."""
    _quiet_environment()
    from harness.config import load_matrix
    from harness.plan import build_plan

    try:
        loaded = load_matrix(_matrix_path(file, example))
        plan = build_plan(loaded)
    except InputError as exc:
        _bad_input(exc)
    _echo_data_notes(plan)
    typer.echo(f"ok: {loaded.path} — {len(plan.models)} model(s) × {len(plan.tasks)} task(s) = {len(plan.cells)} cell(s)")


@app.command()
def plan(file: FileArg = None, example: ExampleOpt = None, output: OutputOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show what a run would do and what is already cached."""
    _quiet_environment()
    from harness.config import load_matrix
    from harness.plan import build_plan

    try:
        p = build_plan(load_matrix(_matrix_path(file, example)), output, load_data=False)
    except InputError as exc:
        _bad_input(exc)
    gen_rows = [{"step": "generate", "name": g.spec.name, "config": str(g.config_path), "key": g.key[:20],
                 "status": "cached" if p.generate_cached(g) else "to run"} for g in p.generate]
    backends = [{"model": mp.spec.name, "backend": mp.resolved.decision.backend, "reason": mp.resolved.decision.reason,
                 "revision": mp.revision} for mp in p.models]
    rows = [{"model": c.model.spec.name, "task": c.task.name, "subsets": c.task.subsets, "splits": c.task.splits,
             "key": c.key[:20], "status": "cached" if p.cached(c) else "to run"} for c in p.cells]
    if as_json:
        typer.echo(json.dumps({"output": str(p.output), "models": backends, "generate": gen_rows, "cells": rows}, indent=2))
        return
    typer.echo(f"run directory: {p.output}")
    for b in backends:
        typer.echo(f"  model {b['model']}: backend {b['backend']} ({b['reason']}) revision={b['revision']}")
    for g in gen_rows:
        typer.echo(f"  [{g['status']:>6}] generate {g['name']} from {g['config']} key={g['key']}")
    for r in rows:
        typer.echo(f"  [{r['status']:>6}] evaluate {r['model']} × {r['task']} subsets={','.join(r['subsets'])} splits={','.join(r['splits'])} key={r['key']}")
    todo = sum(r["status"] != "cached" for r in [*gen_rows, *rows])
    typer.echo(f"{todo} of {len(rows) + len(gen_rows)} step(s) to run")


@app.command()
def run(file: FileArg = None, example: ExampleOpt = None, output: OutputOpt = None,
        device: Annotated[Optional[str], typer.Option(help="torch device, e.g. cuda:0 (default: auto).")] = None,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")] = False) -> None:
    """Run a matrix: every missing (model, task) cell; cached cells are skipped."""
    _quiet_environment()
    from harness.config import load_matrix
    from harness.executor import run_plan
    from harness.plan import build_plan
    from harness.preflight import check_device

    try:
        check_device(device)
        p = build_plan(load_matrix(_matrix_path(file, example)), output)
    except InputError as exc:
        _bad_input(exc)
    _echo_data_notes(p)
    from harness.quiet import progress_bars_hidden

    with progress_bars_hidden(no_progress):
        report = run_plan(p, show_progress=not no_progress, device=device)
    for o in report.outcomes:
        if o.status == "failed":
            typer.secho(f"  FAILED {o.model} × {o.task}: {o.error}", fg=typer.colors.RED, err=True)
        elif o.model == "generate":
            typer.echo(f"  {o.status:>6} generate {o.task}: kept {o.detail.get('kept')} examples -> {o.detail.get('examples')}")
        else:
            flat = ", ".join(f"{sp}/{ss}={v:.5f}" for sp, subs in o.scores.items() for ss, v in subs.items() if v is not None)
            typer.echo(f"  {o.status:>6} {o.model} × {o.task}: {flat}")
    typer.echo(f"results: {p.output / 'results'}")
    raise typer.Exit(EXIT_FAILED if report.failed else EXIT_OK)


@app.command("ls")
def ls(what: Annotated[str, typer.Argument(help="tasks | examples | baselines")] = "tasks",
       task_type: Annotated[Optional[str], typer.Option("--type", help="Filter tasks by mteb type (any case, e.g. retrieval).")] = None) -> None:
    """List mteb task names (type, main score, splits; superseded tasks marked), shipped examples, or reference baselines."""
    _quiet_environment()
    if what == "examples":
        from harness.examples import example_names

        for n in example_names():
            typer.echo(n)
        return
    if what == "baselines":
        from leaderboards.reference import load_reference

        data = load_reference()
        for name, model in data.models.items():
            typer.echo(f"{name}\t{len(model.scores) if hasattr(model, 'scores') else ''}")
        typer.echo(f"# {data.provenance}")
        return
    if what != "tasks":
        _bad_input(InputError(None, "what", f"unknown listing {what!r}", "use one of: tasks, examples, baselines"))
    from harness.task_catalog import all_tasks, canonical_type

    try:
        wanted = canonical_type(task_type) if task_type else None
    except InputError as exc:
        _bad_input(exc)
    for t in all_tasks():
        if wanted and t.type != wanted:
            continue
        mark = f"\tsuperseded by {t.superseded_by}" if t.superseded_by else ""
        typer.echo(f"{t.name}\t{t.type}\t{t.main_score}\t{','.join(t.splits)}{mark}")


def full_app() -> typer.Typer:
    """The app with every command registered: the library-backed ones live in their own modules
    (cli_extra: report / gate / generate; cli_train: train) so evaluation imports only what it uses."""
    from harness import cli_extra, cli_train  # noqa: F401

    return app


def main() -> None:
    """Console-script entry point."""
    full_app()

    try:
        app()
    except InputError as exc:  # raised outside a command's own handler (e.g. while typer parses)
        _echo_error(exc)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":  # torchrun -m harness.cli train ...
    main()
