"""The two user-facing operations, as plain typed functions the ``harness`` CLI wraps.

Everything that can be wrong with the input (paths, names, formats, options) is checked here or
below and raised as ``LeaderboardInputError`` before any file is written, so the CLI can map it to
exit code 2 and a half-written report never exists.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from pydantic import BaseModel

from atomicio import atomic_write_text, file_target_problem

from leaderboards.aggregate import assign_labels, build_report
from leaderboards.errors import LeaderboardInputError
from leaderboards.gate import FAILING, Comparison, GatePolicy
from leaderboards.gate import compare as compare_scores
from leaderboards.gate_markdown import render_gate_markdown
from leaderboards.paired_comparison import ALPHA, ModelComparison, compare_models, pair_trained_with_bases
from leaderboards.reference import ReferenceData, load_reference, resolve_names, unknown_model_error
from leaderboards.render_comparison import comparison_csv, comparison_html, comparison_markdown
from leaderboards.render_html import html_page, render_html
from leaderboards.render_markdown import render_markdown
from leaderboards.render_tabular import render_csv, render_json
from leaderboards.results_reader import read_results_dir
from leaderboards.scores import ModelResults
from leaderboards.training_record import TrainingRecord, read_training

RENDERERS = {"markdown": render_markdown, "md": render_markdown, "html": render_html, "csv": render_csv, "json": render_json}


class GateOutcome(BaseModel):
    """What the gate decided: ``exit_code`` 0 (pass) or 1 (regression); bad input raises instead."""

    exit_code: int
    passed: bool
    markdown: str
    candidate: str
    baseline: str
    comparisons: list[Comparison]


def _check_output_file(output: Path | None, option: str) -> None:
    """Refuse an output path that cannot be a file before any work (no traceback, no temporary left)."""
    problem = file_target_problem(Path(output)) if output is not None else None
    if problem:
        raise LeaderboardInputError(output, option, problem, f"give {option} the path of a file to write, not a folder")


def _baseline_models(names: list[str] | None, data: ReferenceData) -> list[ModelResults]:
    """Shipped reference models (names, suffixes, aliases) and/or results directories, in the order given."""
    if names is None:
        return list(data.models.values())
    models: list[ModelResults] = []
    pending: list[str] = []
    for raw in names:
        for item in (s.strip() for s in raw.split(",")):
            if item and Path(item).is_dir():
                models += read_results_dir(Path(item), origin="directory")
            elif item:
                pending.append(item)
    models += [data.models[n] for n in resolve_names(pending, data)]
    return models


def _pick_reference(reference: str | None, run_models: list[ModelResults], baselines: list[ModelResults],
                    data: ReferenceData) -> tuple[str, list[ModelResults]]:
    """Label deltas are taken against; a shipped model named here joins the baselines if needed."""
    labels = [label for label, _ in assign_labels(run_models, baselines)]
    if reference is None:
        return labels[0], baselines
    if reference in labels:
        return reference, baselines
    run_names = [m.name for m in run_models]
    if reference in run_names and reference not in data.models:
        return labels[run_names.index(reference)], baselines
    try:
        (name,) = resolve_names([reference], data)
    except (LeaderboardInputError, ValueError) as exc:
        raise LeaderboardInputError(None, "--reference", f"{reference!r} is not a model of this report",
                                    f"use one of: {', '.join(labels)}") from exc
    if name not in [b.name for b in baselines]:
        baselines = baselines + [data.models[name]]
    labelled = assign_labels(run_models, baselines)
    return next(label for label, m in labelled if m is data.models[name]), baselines


def report(
    run_dir: Path,
    fmt: str = "markdown",
    baselines: list[str] | None = None,
    reference: str | None = None,
    output: Path | None = None,
) -> str:
    """Render a run's results beside baselines; returns the text and writes it to ``output`` if given.

    ``baselines``: shipped model names, unique suffixes, aliases (``mE5``, ``e5-mistral``, ``openai``,
    ``cohere``, ``all``, ``none``; comma-separated items allowed) or results directories; None = all
    shipped reference models. ``reference``: the model deltas are against (default: the run's first).
    """
    renderer = RENDERERS[_check_format(fmt)]
    _check_output_file(output, "--output")
    run_models = read_results_dir(Path(run_dir), origin="run")
    data = load_reference()
    base = _baseline_models(baselines, data)
    ref_label, base = _pick_reference(reference, run_models, base, data)
    built = build_report(run_models, base, ref_label, title=f"Embedding benchmark report: {Path(run_dir).resolve().name}",
                         run_location=str(run_dir), reference_provenance=data.provenance)
    comparisons, training, notes = trained_model_sections(run_models)
    text = renderer(built.model_copy(update={"trained_vs_base": comparisons, "training": training, "pairing_notes": notes}))
    if output is not None:
        atomic_write_text(Path(output), text)
    return text


def _check_format(fmt: str) -> str:
    if fmt.lower() not in RENDERERS:
        raise LeaderboardInputError(None, "--format", f"{fmt!r} is not a report format", "use markdown, html, csv or json")
    return fmt.lower()


def trained_model_sections(run_models: list[ModelResults], *, alpha: float = ALPHA, n_resamples: int = 10_000,
                           seed: int = 0) -> tuple[list[ModelComparison], list[TrainingRecord], list[str]]:
    """Each trained model against its evaluated base, each trained model's training record, and
    notes naming trained models that could not be paired (their base absent or ambiguous)."""
    labels = {id(m): label for label, m in assign_labels(run_models, [])}
    training = [read_training(m, labels[id(m)]) for m in run_models if m.train_step]
    pairs, notes = pair_trained_with_bases(run_models, {t.train_step: t.base_identity for t in training})
    comparisons = [compare_models(b, t, baseline_label=labels[id(b)], candidate_label=labels[id(t)], alpha=alpha,
                                  n_resamples=n_resamples, seed=seed) for b, t in pairs]
    return comparisons, training, notes


def compare(
    run_dir: Path,
    baseline: str,
    candidate: str,
    fmt: str = "markdown",
    output: Path | None = None,
    alpha: float = ALPHA,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> str:
    """Two models of one run, B (``candidate``) against A (``baseline``): Δ per score, task and category
    with the paired test on per-query scores, Holm-adjusted (see ``leaderboards.paired_comparison``).

    Models are named ``name`` or ``name@revision``; returns the text and writes it to ``output`` if given.
    """
    kind = _check_format(fmt)
    _check_output_file(output, "--output")
    GatePolicy(alpha=alpha, n_resamples=n_resamples)  # the gate's checks of alpha and resamples
    models = read_results_dir(Path(run_dir), origin="run")
    a = _select(models, baseline, Path(run_dir), "--compare")
    b = _select(models, candidate, Path(run_dir), "--compare")
    if a is b:
        raise LeaderboardInputError(Path(run_dir), "--compare", f"names one model twice ({baseline!r}, {candidate!r})",
                                    "give the baseline first and a different candidate second: --compare A B")
    labels = {id(m): label for label, m in assign_labels(models, [])}
    comparison = compare_models(a, b, baseline_label=labels[id(a)], candidate_label=labels[id(b)], alpha=alpha,
                                n_resamples=n_resamples, seed=seed)
    title = f"{comparison.candidate} vs {comparison.baseline}: {Path(run_dir).resolve().name}"
    if kind in ("markdown", "md"):
        text = "\n".join([f"# {title}", ""] + comparison_markdown(comparison)) + "\n"
    elif kind == "html":
        text = html_page(title, f"<h1>{escape(title)}</h1>" + comparison_html(comparison))
    elif kind == "csv":
        text = comparison_csv(comparison)
    else:
        text = comparison.model_dump_json(indent=2) + "\n"
    if output is not None:
        atomic_write_text(Path(output), text)
    return text


def _select(models: list[ModelResults], wanted: str | None, where: Path, option: str) -> ModelResults:
    if wanted is None and len(models) == 1:
        return models[0]
    choices = [f"{m.name}@{m.revision}" for m in models]
    hits = [m for m in models if wanted in (m.name, f"{m.name}@{m.revision}")] if wanted else []
    if len(hits) == 1:
        return hits[0]
    problem = f"holds {len(models)} model revisions" if wanted is None else f"has no single model {wanted!r}"
    raise LeaderboardInputError(where, option, problem, f"pass {option} with one of: {', '.join(choices)}")


def _refuse_identical(base: ModelResults, cand: ModelResults, baseline: str, candidate: Path) -> None:
    """A gate comparing results with themselves cannot fail, so it must not be allowed to pass.

    The usual cause is a CI job whose baseline and candidate paths resolve to the same folder, or a
    candidate folder that is a copy of the baseline: the same harness step keys *and* the same
    evaluation times, i.e. nothing was re-evaluated. (A fresh run of unchanged code shares the step
    keys but not the times, and is gated normally: catching unintended changes is the gate's job.)
    Both are refused as bad input (exit 2) rather than reported as a green gate.
    """
    if os.path.realpath(base.location) == os.path.realpath(cand.location):
        raise LeaderboardInputError(candidate, "--candidate", f"is the same results folder as --baseline {baseline}",
                                    "gate a new run against an older one: a folder compared with itself always passes")
    shared = set(base.step_keys) & set(cand.step_keys)
    if shared and set(base.step_keys) == set(cand.step_keys) and all(base.step_keys[t] == cand.step_keys[t] for t in shared):
        raise LeaderboardInputError(candidate, "--candidate",
                                    f"holds the same evaluations as --baseline {baseline} (identical step keys and "
                                    f"evaluation times for all {len(shared)} task(s): a copy, not a new evaluation)",
                                    "evaluate the candidate model in its own run and gate that run")


def gate(
    baseline: str,
    candidate: Path,
    max_drop: float = 0.01,
    per_task: dict[str, float] | None = None,
    allow_missing: list[str] | None = None,
    require_tasks: list[str] | None = None,
    candidate_model: str | None = None,
    alpha: float = 0.05,
    n_resamples: int = 10_000,
    seed: int = 0,
    output: Path | None = None,
) -> GateOutcome:
    """Compare a candidate run with a baseline (results directory or shipped reference model name).

    Returns exit_code 0/1 and a PR-ready Markdown summary (also written to ``output`` if given);
    raises LeaderboardInputError (exit 2) on bad input. See ``leaderboards.gate`` for the rules.
    """
    _check_output_file(output, "--summary")
    policy = GatePolicy(max_drop=max_drop, per_task=dict(per_task or {}), allow_missing=tuple(allow_missing or ()),
                        require_tasks=tuple(require_tasks or ()), alpha=alpha, n_resamples=n_resamples, seed=seed)
    cand = _select(read_results_dir(Path(candidate), origin="run"), candidate_model, Path(candidate), "--candidate-model")
    if Path(baseline).exists():
        base_models = read_results_dir(Path(baseline), origin="directory")
        same_name = [m for m in base_models if m.name == cand.name]
        base = same_name[0] if len(same_name) == 1 and len(base_models) > 1 else _select(base_models, None, Path(baseline), "--baseline")
        _refuse_identical(base, cand, baseline, candidate)
        is_reference = False
        base_text = f"`{base.name}` (revision `{base.revision}`) from `{baseline}`"
    else:
        data = load_reference()
        try:
            names = resolve_names([baseline], data)
        except LeaderboardInputError as exc:
            raise unknown_model_error(baseline, sorted(data.models)) from exc
        if len(names) != 1:
            raise LeaderboardInputError(None, "--baseline", f"{baseline!r} names {len(names)} models",
                                        f"gate against exactly one of: {', '.join(names) or 'a shipped model'}")
        base = data.models[names[0]]
        is_reference = True
        base_text = f"`{base.name}` — official MTEB scores shipped in leaderboards/ ({data.provenance})"
    comparisons = compare_scores(base, cand, policy, baseline_is_reference=is_reference)
    passed = not any(c.status in FAILING for c in comparisons)
    cand_text = f"`{cand.name}` (revision `{cand.revision}`) from `{candidate}`"
    markdown = render_gate_markdown(comparisons, policy, candidate=cand_text, baseline=base_text, passed=passed)
    if output is not None:
        atomic_write_text(Path(output), markdown)
    return GateOutcome(exit_code=0 if passed else 1, passed=passed, markdown=markdown,
                       candidate=f"{cand.name}@{cand.revision}", baseline=f"{base.name}@{base.revision}",
                       comparisons=comparisons)


def parse_per_task(items: list[str]) -> dict[str, float]:
    """``["SciFact=0.02", "XQuADRetrieval/de=0.03"]`` -> overrides; for the CLI's repeated ``--per-task``."""
    out: dict[str, float] = {}
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError(part)
                out[name.strip()] = float(value)
            except ValueError as exc:
                raise LeaderboardInputError(None, "--per-task", f"{part!r} is not TASK=MAX_DROP",
                                            "write e.g. --per-task SciFact=0.02 (0-1 scale; globs and Task/subset allowed)") from exc
    return out
