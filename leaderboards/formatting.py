"""Number formatting (and the Markdown table) shared by the text renderers.

Reports show MTEB leaderboard units (main score x 100, two decimals) because that is how people
quote these numbers; CSV and JSON keep the raw 0-1 scores so nothing is lost to rounding.
"""

from __future__ import annotations

import math

MISSING = "—"


def points(score: float | None) -> str:
    if score is None:
        return MISSING
    return "NaN" if math.isnan(score) else f"{100 * score:.2f}"


def signed_points(delta: float | None) -> str:
    if delta is None:
        return MISSING
    value = 100 * delta
    if abs(value) < 0.005:
        return "±0.00"
    return f"{value:+.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines
