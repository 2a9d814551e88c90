"""The paired comparison table (B vs A, e.g. a trained model vs its base) as Markdown, HTML and CSV.

One explanation sentence travels with every rendering, because a p-value column is only as good
as the reader's knowledge of what was tested and how many times.
"""

from __future__ import annotations

import csv
import io
from html import escape

from leaderboards.aggregate import displayed
from leaderboards.formatting import MISSING, markdown_table, points, signed_points
from leaderboards.paired_comparison import NO_PER_QUERY, SAME_SCORES, ComparedRow, ModelComparison

MARK = "✱"


def explanation(c: ModelComparison) -> str:
    return (f"Δ = {c.candidate} − {c.baseline} in MTEB points (×100). p: two-sided paired sign-flip permutation "
            f"test on per-query scores ({c.n_resamples:,} resamples, seed {c.seed}); a row averaging several scores "
            "tests its own mean Δ (signs flipped per query, scores weighted as the average weights them). "
            f"p (Holm): adjusted over the table's {c.tests} distinct test{'s' if c.tests != 1 else ''}; "
            f"{MARK} = significant at α = {c.alpha:g} after Holm. “{NO_PER_QUERY}”: the run kept none for that score "
            "(the harness keeps them for retrieval-style tasks), so nothing is tested.")


def p_text(p: float | None) -> str:
    if p is None:
        return MISSING
    return "1" if p >= 1.0 else f"{p:.4f}" if p >= 0.001 else f"{p:.1e}"


def ci_text(row: ComparedRow) -> str:
    if row.ci_low is None or row.ci_high is None:
        return MISSING
    return f"[{100 * row.ci_low:+.2f}, {100 * row.ci_high:+.2f}]"


def row_label(row: ComparedRow) -> str:
    if row.level == "score":
        label = f"↳ {row.split}/{row.subset}"
    elif row.level == "task":
        label = row.task
    else:
        label = f"{row.category} ({row.scores} score{'s' if row.scores != 1 else ''})"
    return label + (f" ({row.note})" if row.note.startswith(SAME_SCORES) else "")


def _cells(row: ComparedRow) -> list[str]:
    """Every column after the row label; a row without a test says why in the p column."""
    p = p_text(row.p_value) if row.p_value is not None else (row.note or MISSING)  # why it is untested
    return [row.category if row.level in ("task", "score") else "", points(row.baseline), points(row.candidate),
            signed_points(row.delta), ci_text(row), str(row.n_queries) if row.n_queries else MISSING, p,
            p_text(row.p_adjusted), MARK if row.significant else ""]


HEADER = ["Row", "Category", "A", "B", "Δ", "95% CI of Δ", "Queries", "p", "p (Holm)", "sig."]


def comparison_markdown(c: ModelComparison) -> list[str]:
    head = [f"A = **{c.baseline}** (revision `{c.baseline_revision}`) · B = **{c.candidate}** (revision "
            f"`{c.candidate_revision}`) · {c.significant} of {len(c.rows)} rows significant", "", explanation(c), ""]
    rows = []
    for row in c.rows:
        label = row_label(row)
        rows.append([f"**{label}**" if row.level in ("category", "overall") else label] + _cells(row))
    return head + markdown_table(HEADER, rows)


def comparison_html(c: ModelComparison) -> str:
    head = "".join(f"<th>{escape(h)}</th>" if i else f'<th class="name">{escape(h)}</th>' for i, h in enumerate(HEADER))
    body = []
    for row in c.rows:
        classes = [row.level] + (["sig"] if row.significant else [])
        cells = _cells(row)
        shown = displayed(row.delta) if row.delta is not None else 0.0
        delta_css = "delta-pos" if shown > 0 else "delta-neg" if shown < 0 else ""
        tds = [f'<td class="name">{escape(row_label(row))}</td>', f'<td class="name">{escape(cells[0])}</td>']
        tds += [f"<td>{escape(v)}</td>" for v in cells[1:3]]
        tds.append(f'<td class="{delta_css}">{escape(cells[3])}</td>' if delta_css else f"<td>{escape(cells[3])}</td>")
        tds += [f"<td>{escape(v)}</td>" for v in cells[4:]]
        body.append(f'<tr class="{" ".join(classes)}">{"".join(tds)}</tr>')
    meta = (f"A = <b>{escape(c.baseline)}</b> (revision <code>{escape(c.baseline_revision)}</code>) · B = "
            f"<b>{escape(c.candidate)}</b> (revision <code>{escape(c.candidate_revision)}</code>) · "
            f"{c.significant} of {len(c.rows)} rows significant")
    return (f'<p class="meta">{meta}</p><p class="meta">{escape(explanation(c))}</p>'
            f'<div class="scroll"><table class="paired"><tr>{head}</tr>{"".join(body)}</table></div>')


CSV_COLUMNS = ["level", "category", "task", "split", "subset", "scores", "baseline", "candidate", "baseline_score",
               "candidate_score", "delta", "ci_low", "ci_high", "n_queries", "p_value", "p_adjusted", "significant",
               "alpha", "note"]


def comparison_csv(c: ModelComparison) -> str:
    """Raw 0-1 numbers, one line per row of the table."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in c.rows:
        values = row.model_dump()
        values = {k: ("" if v is None else repr(v) if isinstance(v, float) else str(v)) for k, v in values.items()}
        writer.writerow({**{k: values[k] for k in CSV_COLUMNS if k in values}, "baseline": c.baseline,
                         "candidate": c.candidate, "baseline_score": values["baseline"],
                         "candidate_score": values["candidate"], "alpha": repr(c.alpha)})
    return buffer.getvalue()
