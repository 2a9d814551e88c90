"""The gate's Markdown summary, shaped to be pasted (or posted by CI) as a pull-request comment:
verdict first, then only the rows that need a human, with every compared score folded below."""

from __future__ import annotations

from collections import Counter

from leaderboards.formatting import MISSING, points, signed_points
from leaderboards.gate import Comparison, GatePolicy

STATUS_TEXT = {
    "regressed": "❌ regressed",
    "nan": "❌ NaN",
    "missing": "❌ missing",
    "not_significant": "⚠️ not significant",
    "missing_allowed": "➖ missing (allowed)",
    "improved": "⬆️ improved",
    "ok": "✅ ok",
    "new": "🆕 not in baseline",
}
_ORDER = list(STATUS_TEXT)


def _test_cell(c: Comparison) -> str:
    t = c.paired_test
    if t is None:
        return "n/a (no per-query scores)" if c.status in ("regressed", "not_significant") else ""
    adj = f" (Holm {t.p_adjusted:.3f})" if t.p_adjusted is not None else ""
    return (f"p={t.p_value:.3f}{adj}, n={t.n_queries}, 95% CI [{signed_points(t.ci_low)}, {signed_points(t.ci_high)}]")


def _table(rows: list[Comparison]) -> list[str]:
    lines = ["| Status | Task | Split | Subset | Baseline | Candidate | Δ | Allowed drop | Paired test |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for c in sorted(rows, key=lambda c: (_ORDER.index(c.status), c.task, c.split, c.subset)):
        lines.append(f"| {STATUS_TEXT[c.status]} | {c.task} | {c.split} | {c.subset} | {points(c.baseline)} | "
                     f"{points(c.candidate)} | {signed_points(c.delta)} | {100 * c.tolerance:.2f} | {_test_cell(c) or MISSING} |")
    return lines


def render_gate_markdown(
    comparisons: list[Comparison], policy: GatePolicy, *, candidate: str, baseline: str, passed: bool
) -> str:
    counts = Counter(c.status for c in comparisons)
    failing = counts["regressed"] + counts["nan"] + counts["missing"]
    head = "✅ Embedding regression gate passed" if passed else f"❌ Embedding regression gate failed: {failing} score(s) regressed, NaN or missing"
    overrides = ", ".join(f"{k} {100 * v:.2f}" for k, v in sorted(policy.per_task.items()))
    lines = [
        f"### {head}", "",
        f"**Candidate:** {candidate}  ",
        f"**Baseline:** {baseline}  ",
        f"**Tolerance:** a main score may drop by at most {100 * policy.max_drop:.2f} points "
        f"({policy.max_drop:g} on MTEB's 0–1 scale)" + (f"; overrides: {overrides}" if overrides else "") + ".  ",
        f"**Noise:** where both runs kept per-query scores, the drop must also exceed the tolerance significantly: "
        f"one-sided paired sign-flip permutation test over queries on tolerance-shifted differences, Holm-corrected "
        f"across the gate's scores (α={policy.alpha:g}, {policy.n_resamples} resamples, seed {policy.seed}).",
        "",
        "| " + " | ".join(STATUS_TEXT[s] for s in _ORDER) + " |",
        "|" + "---:|" * len(_ORDER),
        "| " + " | ".join(str(counts[s]) for s in _ORDER) + " |",
        "",
    ]
    attention = [c for c in comparisons if c.status in ("regressed", "nan", "missing", "not_significant", "missing_allowed")]
    if attention:
        lines += ["#### Needs attention", ""] + _table(attention) + [""]
    if counts["not_significant"]:
        lines += [f"{counts['not_significant']} drop(s) beyond tolerance are within query-level noise "
                  "(not significant) and do not fail the gate.", ""]
    lines += [f"<details><summary>All {len(comparisons)} compared scores (×100)</summary>", ""] + _table(comparisons)
    lines += ["", "</details>", ""]
    return "\n".join(lines)
