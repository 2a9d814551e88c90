"""CSV and JSON renderings, for spreadsheets and scripts: raw 0-1 scores, nothing rounded.

CSV is long format (one row per model and number) with a ``level`` column, so one file holds the
individual scores, the per-task means and the category averages without a second schema.
"""

from __future__ import annotations

import csv
import io

from leaderboards.aggregate import CategoryAverage, Report, ScoreRow, competition_ranks

CSV_COLUMNS = [
    "level", "category", "task", "split", "subset", "model", "model_name", "revision", "origin",
    "score", "delta_vs_reference", "rank", "tasks_in_average", "tasks_covered", "tasks_total", "reference",
]


def _num(value: float | int | None) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    entries = {e.label: e for e in report.entries}

    def base(label: str) -> dict[str, str]:
        e = entries[label]
        return {"model": label, "model_name": e.name, "revision": e.revision, "origin": e.origin,
                "reference": report.reference_label}

    def score_rows(level: str, rows: list[ScoreRow]) -> None:
        for row in rows:
            for label, score in row.scores.items():
                writer.writerow(base(label) | {
                    "level": level, "category": row.task_type, "task": row.task, "split": row.split,
                    "subset": row.subset, "score": _num(score), "delta_vs_reference": _num(row.deltas[label]),
                    "rank": _num(row.ranks[label]),
                })

    def category_rows(level: str, cats: list[CategoryAverage]) -> None:
        ref_avg = {c.category: c.averages.get(report.reference_label) for c in cats}
        for cat in cats:
            ranks = competition_ranks(cat.averages)
            for label, avg in cat.averages.items():
                ref = ref_avg[cat.category]
                writer.writerow(base(label) | {
                    "level": level, "category": cat.category, "score": _num(avg),
                    "delta_vs_reference": _num(avg - ref if avg is not None and ref is not None else None),
                    "rank": _num(ranks[label]), "tasks_in_average": str(cat.tasks_total) if avg is not None else "0",
                    "tasks_covered": str(cat.coverage[label]), "tasks_total": str(cat.tasks_total),
                })

    score_rows("score", report.subsets)
    score_rows("task", report.tasks)
    category_rows("category", report.categories + ([report.beir_average] if report.beir_average else []))
    category_rows("overall", [report.overall])
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"
