"""Markdown rendering of a report: models as rows, so a dozen baselines stay readable in a PR or a terminal."""

from __future__ import annotations

from leaderboards.aggregate import CategoryAverage, Report, ScoreRow
from leaderboards.formatting import MISSING, markdown_table, points, signed_points
from leaderboards.render_comparison import comparison_markdown
from leaderboards.render_training import training_markdown


def score_cell(row: ScoreRow, label: str, reference: str) -> str:
    score = row.scores.get(label)
    if score is None:
        return MISSING
    rank = row.ranks.get(label)
    if label == reference:
        return f"{points(score)} (#{rank})"
    return f"{points(score)} ({signed_points(row.deltas.get(label))}, #{rank})"


def average_cell(cat: CategoryAverage, label: str) -> str:
    """The category average, or "— (k/n)" for a model that has k of the category's n tasks."""
    avg = cat.averages.get(label)
    if avg is not None:
        return points(avg)
    return f"{MISSING} ({cat.coverage.get(label, 0)}/{cat.tasks_total})"


def coverage_text(cat: CategoryAverage) -> str:
    used = f"{cat.tasks_total} task{'s' if cat.tasks_total != 1 else ''}"
    if not cat.missing:
        return used
    lacking = "; ".join(f"{label} ({cat.coverage[label]}/{cat.tasks_total}, lacks {', '.join(tasks)})"
                        for label, tasks in cat.missing.items())
    return f"{used}; no average for: {lacking}"


def left_out_text(report: Report) -> str | None:
    """The one line naming baselines that share no task with the run (None if there are none)."""
    if not report.left_out:
        return None
    n = len(report.left_out)
    return f"Left out: {n} baseline model{'s' if n != 1 else ''} with no score on this run's tasks ({', '.join(report.left_out)})."


def _summary(report: Report) -> list[str]:
    cats = report.categories
    header = ["Rank", "Model", "Origin", "Coverage"] + [c.category for c in cats] + ["Overall"]
    rows = []
    for e in report.entries:
        cov = f"{e.tasks_covered}/{e.tasks_total} tasks, {e.scores_covered}/{e.scores_total} scores"
        cells = [average_cell(c, e.label) for c in cats]
        rows.append([str(e.rank) if e.rank else MISSING, e.label, e.origin, cov] + cells + [average_cell(report.overall, e.label)])
    lines = markdown_table(header, rows)
    lines += ["", "Each average covers all of the run's tasks in its category; a model lacking some gets — "
              "(tasks it has/tasks in the category) there:", ""]
    lines += [f"- **{c.category}**: {', '.join(c.tasks) or 'none'} — {coverage_text(c)}" for c in cats + [report.overall]]
    left = left_out_text(report)
    if left:
        lines += ["", left]
    return lines


def _per_task(report: Report, rows: list[ScoreRow], extra: CategoryAverage | None = None) -> list[str]:
    header = ["Model"] + [f"{r.task} ({r.task_type})" for r in rows] + ([f"{extra.category} avg"] if extra else [])
    body = []
    for e in report.entries:
        cells = [score_cell(r, e.label, report.reference_label) for r in rows]
        if extra:
            cells.append(average_cell(extra, e.label))
        body.append([e.label] + cells)
    return markdown_table(header, body)


def _per_language(report: Report) -> list[str]:
    lines: list[str] = []
    by_task: dict[tuple[str, str], list[ScoreRow]] = {}
    for row in report.languages:
        by_task.setdefault((row.task, row.split), []).append(row)
    for (task, split), rows in by_task.items():
        lines += ["", f"### {task} ({split})", ""]
        header = ["Model"] + [r.subset for r in rows]
        body = [[e.label] + [score_cell(r, e.label, report.reference_label) for r in rows] for e in report.entries]
        lines += markdown_table(header, body)
    return lines


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    lines.append(f"Run: `{report.run_location}` · Δ against: **{report.reference_label}**"
                 + (f" · reference data: {report.reference_provenance}" if report.reference_provenance else ""))
    lines.append("")
    lines.append("Scores are MTEB main scores ×100. Cells read `score (Δ vs reference, #rank)`; "
                 "— means the model has no score for it. Coverage counts the run's tasks and scores a model has.")
    lines += ["", "## Summary (MTEB category averages)", ""] + _summary(report)
    if report.trained_vs_base:
        lines += ["", "## Trained models vs their bases"]
        for c in report.trained_vs_base:
            lines += ["", f"### {c.candidate} vs {c.baseline}", ""] + comparison_markdown(c)
    if report.training:
        lines += ["", "## Training", ""] + training_markdown(report.training)
    lines += ["", "## Per task", ""] + _per_task(report, report.tasks)
    if report.beir:
        lines += ["", "## BEIR per dataset", ""] + _per_task(report, report.beir, report.beir_average)
    if report.languages:
        lines += ["", "## Per language"] + _per_language(report)
    if report.notes or report.pairing_notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes + report.pairing_notes]
    return "\n".join(lines) + "\n"
