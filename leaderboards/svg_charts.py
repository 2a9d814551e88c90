"""Inline SVG bar charts, written by hand so the HTML report needs no plotting library and no network.

One chart type covers both plots the issue asks for (category averages, per-language scores):
grouped vertical bars, one group per x label and one colour per model. Missing scores draw a grey
"n/a" tick instead of a zero-height bar, so absence is never mistaken for a score of zero.
"""

from __future__ import annotations

import math
from html import escape

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939",
)


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def grouped_bar_chart(
    title: str,
    groups: list[str],
    series: list[tuple[str, str, list[float | None]]],
    *,
    width: int = 1160,
    height: int = 340,
) -> str:
    """``series`` is (label, colour, one value per group) with values in leaderboard points (0-100)."""
    left, right, top = 48, 12, 34
    rotate = len(groups) > 8 or max((len(g) for g in groups), default=0) * 6.5 > (width - left - right) / max(1, len(groups))
    bottom = 86 if rotate else 30
    height = height if rotate else height - 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, _, vals in series for v in vals if v is not None]
    y_max = max(10.0, min(100.0, math.ceil(max(values, default=10.0) / 10.0) * 10.0))
    y_min = min(0.0, math.floor(min(values, default=0.0) / 10.0) * 10.0)

    def y(value: float) -> float:
        return top + plot_h * (y_max - value) / (y_max - y_min)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    step = 10.0 if y_max - y_min <= 50 else 20.0
    tick = y_min
    while tick <= y_max + 1e-9:
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#555">{tick:g}</text>')
        tick += step
    group_w = plot_w / max(1, len(groups))
    bar_w = max(1.0, min(22.0, group_w * 0.8 / max(1, len(series))))
    for g, group in enumerate(groups):
        x0 = left + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, (label, colour, vals) in enumerate(series):
            value = vals[g]
            x = x0 + s * bar_w
            tip = f"{label} — {group}: " + ("no score" if value is None else f"{value:.2f}")
            if value is None:
                parts.append(f'<g class="missing"><title>{escape(tip)}</title>'
                             f'<line x1="{x:.1f}" x2="{x + bar_w:.1f}" y1="{y(0) - 1:.1f}" y2="{y(0) - 1:.1f}" '
                             f'stroke="#999" stroke-width="2" stroke-dasharray="2,1"/></g>')
                continue
            y_top, y_base = y(max(value, 0.0)), y(min(value, 0.0))
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y_top:.1f}" width="{max(bar_w - 1, 0.8):.1f}" '
                         f'height="{max(y_base - y_top, 0.5):.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>')
        cx = left + g * group_w + group_w / 2
        ly = top + plot_h + 14
        if rotate:
            parts.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="end" transform="rotate(-35 {cx:.1f} {ly:.1f})">{escape(group)}</text>')
        else:
            parts.append(f'<text x="{cx:.1f}" y="{ly:.1f}" text-anchor="middle">{escape(group)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
    parts.append("</svg>")
    return "\n".join(parts)
