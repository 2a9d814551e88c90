"""How each trained model of a run was trained: tables (Markdown and HTML) and curves (HTML only).

The tables answer "trained on what, for how long, at what cost" (examples per source, the
generated sets by task type and language, steps, wall time, GPU-hours, generation $); the curves
answer "did training go well" (loss, learning rate, dev score per step).
"""

from __future__ import annotations

from html import escape

from leaderboards.formatting import MISSING, markdown_table
from leaderboards.svg_charts import color_for, line_chart
from leaderboards.training_record import GeneratedSet, TrainingRecord

CURVES_NOTE = "Curves (loss, learning rate, dev score) are drawn in the HTML report (`--format html`)."


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def _money(value: float | None) -> str:
    return MISSING if value is None else f"${value:,.2f}"


def _counts(table: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))) or MISSING


def facts(r: TrainingRecord) -> list[tuple[str, str]]:
    gpu = MISSING if r.gpu_hours is None else f"{r.gpu_hours:.3g}"
    return [
        ("trained from", r.trained_from or MISSING),
        ("train step", f"{r.label or 'train'} ({r.train_step[:12]})"),
        ("steps", MISSING if r.steps is None else f"{r.steps:,}"),
        ("wall time", _duration(r.seconds)),
        ("GPU-hours", f"{gpu} ({r.gpu_note})"),
        ("generation $", _money(r.generation_cost_usd) + (" (generate steps' cost_usd)" if r.generated else " (no generated data)")),
        ("examples per source", _counts(r.source_counts)),
        ("curves from", r.curves_from or MISSING),
    ]


def _generated_rows(sets: list[GeneratedSet]) -> list[list[str]]:
    return [[g.label, MISSING if g.kept is None else f"{g.kept:,}", _money(g.cost_usd),
             _counts(g.counts.get("task_type", {})), _counts(g.counts.get("language", {}))] for g in sets]


GENERATED_HEADER = ["Generated set", "Kept", "Cost", "Per task type", "Per language"]


def training_markdown(records: list[TrainingRecord]) -> list[str]:
    lines: list[str] = [CURVES_NOTE]
    for r in records:
        lines += ["", f"### {r.model}", ""]
        lines += markdown_table(["", r.model], [[k, v] for k, v in facts(r)])
        if r.generated:
            lines += ["", "Generated sets the mixture read (counts of the whole set, before any max_examples cap):", ""]
            lines += markdown_table(GENERATED_HEADER, _generated_rows(r.generated))
        if r.notes:
            lines += [""] + [f"- {n}" for n in r.notes]
    return lines


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th class="name">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td class="name">{escape(c)}</td>' for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def training_charts(r: TrainingRecord) -> list[str]:
    """One SVG per curve kind the record holds (dev: one line per dev task)."""
    charts = []
    if r.loss:
        charts.append(line_chart(f"{r.model}: training loss", [("loss", color_for(0), r.loss.steps, r.loss.values)],
                                 y_label="loss"))
    if r.lr:
        charts.append(line_chart(f"{r.model}: learning rate", [("learning rate", color_for(1), r.lr.steps, r.lr.values)],
                                 y_label="lr"))
    if r.dev:
        charts.append(line_chart(f"{r.model}: dev main score", [(c.name, color_for(2 + i), c.steps, c.values)
                                                                 for i, c in enumerate(r.dev)], y_label="main score"))
    return charts


def training_html(records: list[TrainingRecord]) -> str:
    parts = []
    for r in records:
        parts.append(f"<h3>{escape(r.model)}</h3>" + _table_html(["", r.model], [[k, v] for k, v in facts(r)]))
        if r.generated:
            parts.append('<p class="meta">Generated sets the mixture read (counts of the whole set, before any '
                         "max_examples cap):</p>" + _table_html(GENERATED_HEADER, _generated_rows(r.generated)))
        charts = training_charts(r)
        if charts:
            parts.append('<div class="curves">' + "".join(charts) + "</div>")
        else:
            parts.append('<p class="meta">No curves: the train step folder holds neither metrics.jsonl nor losses.</p>')
        if r.notes:
            parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in r.notes) + "</ul>")
    return "".join(parts)
