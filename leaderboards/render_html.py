"""A single self-contained HTML report: inline CSS and inline SVG, no scripts, no network.

It must open from a CI artifact or an e-mail attachment years later, so nothing is fetched and
nothing depends on a JavaScript runtime; hovering a bar shows its exact value through SVG titles.
"""

from __future__ import annotations

from html import escape

from leaderboards.aggregate import CategoryAverage, Report, ScoreRow, displayed
from leaderboards.formatting import MISSING, points, signed_points
from leaderboards.render_comparison import comparison_html
from leaderboards.render_markdown import average_cell, coverage_text, left_out_text
from leaderboards.render_training import training_html
from leaderboards.svg_charts import color_for, grouped_bar_chart

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1220px}
h1{font-size:22px;margin-bottom:4px} h2{margin-top:28px;border-bottom:1px solid #ccc;padding-bottom:4px}
.meta{color:#555;font-size:13px} table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap} th{background:#f2f4f7}
td.name,th.name{text-align:left} tr.run td{font-weight:600} tr.reference td{background:#fff8e1}
.delta-pos{color:#1a7f37;font-size:11px} .delta-neg{color:#cf222e;font-size:11px} .rank{color:#777;font-size:11px}
.missing{color:#aaa} .legend span{display:inline-block;margin:2px 12px 2px 0;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.scroll{overflow-x:auto} ul.cover{font-size:13px;color:#444}
table.paired tr.sig td{font-weight:600;background:#eef7ee} table.paired tr.score td.name:first-child{padding-left:22px}
table.paired tr.category td,table.paired tr.overall td{border-top:2px solid #999}
.curves svg{margin:4px 12px 4px 0;border:1px solid #eee}
"""


def _row_class(report: Report, label: str, origin: str) -> str:
    classes = ["run"] if origin == "run" else []
    if label == report.reference_label:
        classes.append("reference")
    return f' class="{" ".join(classes)}"' if classes else ""


def _score_cell(row: ScoreRow, label: str, reference: str) -> str:
    score = row.scores.get(label)
    if score is None:
        return f'<td class="missing">{MISSING}</td>'
    html = points(score)
    delta = row.deltas.get(label)
    if label != reference and delta is not None:
        shown = displayed(delta)  # a delta that displays as ±0.00 is neither green nor red
        css = "delta-pos" if shown > 0 else "delta-neg" if shown < 0 else "rank"
        html += f' <span class="{css}">{signed_points(delta)}</span>'
    html += f' <span class="rank">#{row.ranks.get(label)}</span>'
    return f"<td>{html}</td>"


def _models_table(report: Report, rows: list[ScoreRow], headers: list[str], extra: dict[str, str] | None = None) -> str:
    """Models as rows, one column per task or subset; ``headers`` are already HTML-escaped."""
    head = '<tr><th class="name">Model</th>' + "".join(f"<th>{h}</th>" for h in headers)
    head += ("<th>Average</th>" if extra is not None else "") + "</tr>"
    body = []
    for e in report.entries:
        cells = "".join(_score_cell(r, e.label, report.reference_label) for r in rows)
        if extra is not None:
            cells += f"<td>{extra[e.label]}</td>"
        body.append(f'<tr{_row_class(report, e.label, e.origin)}><td class="name">{escape(e.label)}</td>{cells}</tr>')
    return f'<div class="scroll"><table>{head}{"".join(body)}</table></div>'


def _summary(report: Report) -> str:
    cats = report.categories
    head = ('<tr><th>Rank</th><th class="name">Model</th><th>Origin</th><th>Coverage</th>'
            + "".join(f"<th>{escape(c.category)}</th>" for c in cats) + "<th>Overall</th></tr>")
    body = []
    for e in report.entries:
        cov = f"{e.tasks_covered}/{e.tasks_total} tasks · {e.scores_covered}/{e.scores_total} scores"
        cells = "".join(_average_td(c, e.label) for c in cats + [report.overall])
        body.append(f'<tr{_row_class(report, e.label, e.origin)}><td>{e.rank or MISSING}</td>'
                    f'<td class="name">{escape(e.label)}</td><td>{e.origin}</td><td>{cov}</td>{cells}</tr>')
    notes = "".join(f"<li><b>{escape(c.category)}</b>: {escape(', '.join(c.tasks) or 'none')} — "
                    f"{escape(coverage_text(c))}</li>" for c in cats + [report.overall])
    left = left_out_text(report)
    return (f'<div class="scroll"><table>{head}{"".join(body)}</table></div>'
            "<p class=\"meta\">Each average covers all of the run's tasks in its category; a model lacking some gets "
            f'— (tasks it has/tasks in the category) there:</p><ul class="cover">{notes}</ul>'
            + (f'<p class="meta">{escape(left)}</p>' if left else ""))


def _average_td(cat: CategoryAverage, label: str) -> str:
    text = average_cell(cat, label)
    return f'<td class="missing">{escape(text)}</td>' if cat.averages.get(label) is None else f"<td>{text}</td>"


def _legend(report: Report) -> str:
    items = "".join(f'<span><i style="background:{color_for(i)}"></i>{escape(e.label)}</span>'
                    for i, e in enumerate(report.entries))
    return f'<div class="legend">{items}</div>'


def _series(report: Report, values: list[dict[str, float | None]]) -> list[tuple[str, str, list[float | None]]]:
    return [(e.label, color_for(i), [None if v.get(e.label) is None else 100 * v[e.label] for v in values])
            for i, e in enumerate(report.entries)]


def _language_sections(report: Report) -> str:
    by_task: dict[tuple[str, str], list[ScoreRow]] = {}
    for row in report.languages:
        by_task.setdefault((row.task, row.split), []).append(row)
    parts = []
    for (task, split), rows in by_task.items():
        chart = grouped_bar_chart(f"{task} ({split}) per language", [r.subset for r in rows],
                                  _series(report, [r.scores for r in rows]))
        parts.append(f"<h3>{escape(task)} ({escape(split)})</h3>{chart}"
                     + _models_table(report, rows, [escape(r.subset) for r in rows]))
    return "".join(parts)


def render_html(report: Report) -> str:
    cats = report.categories + [report.overall]
    chart = grouped_bar_chart("MTEB category averages (models covering the whole category)", [c.category for c in cats],
                              _series(report, [c.averages for c in cats]))
    meta = f"Run: <code>{escape(report.run_location)}</code> · Δ against <b>{escape(report.reference_label)}</b>"
    if report.reference_provenance:
        meta += f" · reference data: {escape(report.reference_provenance)}"
    sections = [
        f"<h1>{escape(report.title)}</h1><p class=\"meta\">{meta}<br>Scores are MTEB main scores ×100; "
        "small numbers are Δ vs the reference and rank; — = no score.</p>",
        _legend(report),
        f'<h2 id="summary">Summary</h2><div class="scroll">{chart}</div>{_summary(report)}',
    ]
    if report.trained_vs_base:
        sections.append('<h2 id="trained-vs-base">Trained models vs their bases</h2>' + "".join(
            f"<h3>{escape(c.candidate)} vs {escape(c.baseline)}</h3>{comparison_html(c)}" for c in report.trained_vs_base))
    if report.training:
        sections.append(f'<h2 id="training">Training</h2>{training_html(report.training)}')
    if report.languages:
        sections.append(f'<h2 id="languages">Per language</h2>{_language_sections(report)}')
    sections += [
        '<h2 id="tasks">Per task</h2>'
        + _models_table(report, report.tasks, [f'{escape(r.task)}<br><span class="rank">{escape(r.task_type)}</span>'
                                               for r in report.tasks]),
    ]
    if report.beir and report.beir_average:
        avg = {label: escape(average_cell(report.beir_average, label)) for label in report.beir_average.averages}
        sections.append('<h2 id="beir">BEIR per dataset</h2>' + _models_table(report, report.beir, [escape(r.task) for r in report.beir], avg))
    notes = report.notes + report.pairing_notes
    if notes:
        sections.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    return html_page(report.title, "".join(sections))


def html_page(title: str, body: str) -> str:
    """The one page shell (inline CSS, no scripts) every HTML rendering uses."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
