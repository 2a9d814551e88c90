"""Matrix commands: ``validate``, ``plan``, ``gc``, ``run`` and ``ls``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from harness.cli.app import (EXIT_FAILED, EXIT_OK, ExampleOpt, FileArg, OutputOpt, _bad_input, _matrix_path,
                             _prepare_environment, app)
from harness.errors import InputError

if TYPE_CHECKING:
    from harness.pipeline.planner import Plan


def _echo_data_notes(p: "Plan") -> None:
    """What loading changed in the data (e.g. qrels dropped on request): said once, before any work."""
    for rt in p.tasks:
        for note in rt.notes:
            typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)


def _echo_plan_notes(p: "Plan") -> None:
    for note in p.notes:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)


def _load_plan(file: Optional[Path], example: Optional[str], output: Optional[Path] = None, load_data: bool = True) -> "Plan":
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix

    return build_plan(load_matrix(_matrix_path(file, example)), output, load_data=load_data)


@app.command()
def validate(file: FileArg = None, example: ExampleOpt = None) -> None:
    """Check a matrix offline: schema, mixtures, train entries, task names, subsets and every data file."""
    _prepare_environment()
    try:
        plan = _load_plan(file, example)
    except InputError as exc:
        _bad_input(exc)
    _echo_data_notes(plan)
    _echo_plan_notes(plan)
    from harness.steps import kinds

    steps = ", ".join(f"{len(plan.of_kind(k))} {k}" for k in kinds())
    typer.echo(f"ok: {plan.loaded.path} — {len(plan.models)} model(s) × {len(plan.tasks)} task(s) = {len(plan.cells)} cell(s); "
               f"steps: {steps}")


@app.command()
def plan(file: FileArg = None, example: ExampleOpt = None, output: OutputOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show the step DAG and the bill: each step cached, resumable or to run, and what it will cost."""
    _prepare_environment()
    from harness.pipeline.bill import bill, describe, describe_total

    try:
        p = _load_plan(file, example, output, load_data=False)
    except InputError as exc:
        _bad_input(exc)
    bills = bill(p)
    info = describe(p, bills)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"run directory: {p.output}")
    for b in info["models"]:
        typer.echo(f"  model {b['model']}: backend {b['backend']} ({b['reason']}) revision={b['revision']}")
    labels = {s.key: s.label for s in p.steps}
    for sb in bills:
        s = sb.step
        after = f" after {', '.join(labels[i.key] for i in s.inputs)}" if s.inputs else ""
        cost = f"  — {sb.estimate.summary}" if sb.estimate is not None else "  — cached: costs nothing"
        resumes = f" ({sb.progress})" if sb.progress else ""
        typer.echo(f"  [{sb.status:>6}] {s.label} key={s.key[:20]}{after}{resumes}{cost}")
    todo = sum(b.status != "cached" for b in bills)
    typer.echo(f"{todo} of {len(bills)} step(s) to run")
    typer.echo(f"estimated cost of the steps to run: {describe_total(info['cost_total'])}")
    _echo_plan_notes(p)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"


@app.command()
def gc(file: FileArg = None, example: ExampleOpt = None, output: OutputOpt = None,
       delete: Annotated[bool, typer.Option("--delete", help="Remove what is listed (default: only list).")] = False) -> None:
    """List (or --delete) finished steps and work directories that the matrix as it is now no longer needs."""
    _prepare_environment()
    from harness.pipeline.gc import delete as remove
    from harness.pipeline.gc import find_garbage
    from harness.steps.store import ArtifactStore

    try:
        p = _load_plan(file, example, output, load_data=False)
    except InputError as exc:
        _bad_input(exc)
    keep: dict[str, set[str]] = {}
    for step in p.steps:
        keep.setdefault(step.kind, set()).add(step.key)
    store = ArtifactStore(p.output)
    garbage, busy = find_garbage(store, keep)
    for item in garbage:
        typer.echo(f"  {item.state:>10} {item.kind:<8} {item.label or item.key[:20]}  {_mib(item.size)}")
    for path in busy:
        typer.secho(f"  in use, kept: {path}", fg=typer.colors.YELLOW, err=True)
    total = sum(g.size for g in garbage)
    if not delete:
        hint = "; run again with --delete to remove" if garbage else ""
        typer.echo(f"{len(garbage)} entr{'y' if len(garbage) == 1 else 'ies'} not needed by {p.loaded.path.name}, {_mib(total)}{hint}")
        return
    freed = remove(store, garbage)
    typer.echo(f"removed {len(garbage)} entr{'y' if len(garbage) == 1 else 'ies'}, freed {_mib(freed)}")


ExecutorOpt = Annotated[str, typer.Option("--executor", help="local | ray")]


@app.command()
def run(file: FileArg = None, example: ExampleOpt = None, output: OutputOpt = None,
        device: Annotated[Optional[str], typer.Option(help="torch device, e.g. cuda:0 (default: auto).")] = None,
        devices: Annotated[Optional[str], typer.Option(
            "--devices", help="Several torch devices, e.g. cuda:0,cuda:1: each evaluation's encoding is spread over one "
            "worker process per device (same scores and caches as one device).")] = None,
        executor: ExecutorOpt = "local",
        address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster address (default: start a local one).")] = None,
        jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Local executor: independent units run at once.")] = 1,
        no_progress: Annotated[bool, typer.Option("--no-progress", help="Hide progress bars.")] = False) -> None:
    """Run a matrix: every missing generate, train and evaluate step; finished steps are reused."""
    _prepare_environment()
    from harness.pipeline.preflight import check_device, check_devices, check_executor

    try:
        check_device(device)
        check_executor(executor, address)
        pool = check_devices(devices, device=device, executor=executor)
        p = _load_plan(file, example, output)
    except InputError as exc:
        _bad_input(exc)
    if len(pool) == 1:  # one device is exactly --device: encoded here, no worker
        device, pool = pool[0], ()
    _echo_data_notes(p)
    _echo_plan_notes(p)
    from harness.third_party_output import progress_bars_hidden

    with progress_bars_hidden(no_progress):
        if executor == "ray":
            from harness.pipeline.ray_executor import run_plan_on_ray

            try:
                report = run_plan_on_ray(p, address=address, show_progress=not no_progress, device=device)
            except InputError as exc:
                _bad_input(exc)
        else:
            from harness.pipeline.local import run_plan

            report = run_plan(p, show_progress=not no_progress, device=device, devices=pool, jobs=jobs)
    _echo_outcomes(report)
    typer.echo(f"results: {p.output / 'results'}")
    raise typer.Exit(EXIT_FAILED if report.failed else EXIT_OK)


def _echo_outcomes(report: Any) -> None:
    """One line per step (its kind says what its summary means), then what ran of each kind."""
    from harness.steps import kind_of, kinds

    for o in report.outcomes:
        if o.status in ("failed", "skipped"):
            typer.secho(f"  {o.status.upper()} {o.title}: {o.error}", fg=typer.colors.RED, err=True)
            continue
        summary = kind_of(o.kind).describe_summary(o.summary)
        typer.echo(f"  {o.status:>6} {o.title}" + (f": {summary}" if summary else ""))
    ran = ", ".join(f"{report.count(k, 'done')} {k}" for k in kinds())
    texts = sum(v.get("texts_encoded", 0) for k, v in report.encode_stats.items() if not k.startswith("_"))
    typer.echo(f"ran {ran} step(s); {texts} text(s) encoded{_per_device(report.encode_stats)}")


def _per_device(encode_stats: dict[str, Any]) -> str:
    """`` (cuda:0 512, cuda:1 498)``: what each --devices worker encoded, over every model; empty without workers."""
    totals: dict[int, list[Any]] = {}
    for name, stats in encode_stats.items():
        for i, worker in enumerate([] if name.startswith("_") else stats.get("devices", [])):
            totals.setdefault(i, [worker["device"], 0])[1] += worker["texts_encoded"]
    return f" ({', '.join(f'{d} {n}' for d, n in totals.values())})" if totals else ""


@app.command("ls")
def ls(what: Annotated[str, typer.Argument(help="tasks | examples | baselines")] = "tasks",
       task_type: Annotated[Optional[str], typer.Option("--type", help="Filter tasks by mteb type (any case, e.g. retrieval).")] = None) -> None:
    """List mteb task names (type, main score, splits; superseded tasks marked), shipped examples, or reference baselines."""
    _prepare_environment()
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
    from harness.evaluation.task_catalog import all_tasks, canonical_type

    try:
        wanted = canonical_type(task_type) if task_type else None
    except InputError as exc:
        _bad_input(exc)
    for t in all_tasks():
        if wanted and t.type != wanted:
            continue
        mark = f"\tsuperseded by {t.superseded_by}" if t.superseded_by else ""
        typer.echo(f"{t.name}\t{t.type}\t{t.main_score}\t{','.join(t.splits)}{mark}")
