"""Inline SVG charts, written by hand so the HTML report needs no plotting library and no network.

Two chart types. Scores (category averages, per-language scores) are grouped vertical bars, one
group per x label and one colour per model; missing scores draw a grey "n/a" tick instead of a
zero-height bar, so absence is never mistaken for a score of zero. Training curves (loss, learning
rate, dev score over optimizer steps) are polylines.
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


def _svg_open(css_class: str, title: str, width: int, height: int, left: int, title_size: int) -> list[str]:
    """The opening tag (titled for screen readers) and the visible title of a chart."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="20" font-size="{title_size}" font-weight="bold">{escape(title)}</text>',
    ]


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

    parts = _svg_open("chart", title, width, height, left, 14)
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


MAX_CURVE_POINTS = 1000  # a 100k-step run drawn point by point would be megabytes of SVG


def _nice_ticks(low: float, high: float, count: int = 5, min_step: float = 0.0) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart, at least ``min_step``) covering [low, high]."""
    raw = max((high - low) / max(1, count), min_step)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def thin_curve(steps: list[int], values: list[float], limit: int = MAX_CURVE_POINTS) -> tuple[list[float], list[float], int]:
    """At most ``limit`` points: means of consecutive buckets of ``k`` steps (k = 1 keeps every point)."""
    k = max(1, math.ceil(len(steps) / limit))
    if k == 1:
        return [float(s) for s in steps], list(values), 1
    xs = [sum(steps[i:i + k]) / len(steps[i:i + k]) for i in range(0, len(steps), k)]
    ys = [sum(values[i:i + k]) / len(values[i:i + k]) for i in range(0, len(values), k)]
    return xs, ys, k


def line_chart(
    title: str,
    series: list[tuple[str, str, list[int], list[float]]],
    *,
    y_label: str = "",
    width: int = 560,
    height: int = 240,
) -> str:
    """Curves over optimizer steps: ``series`` is (label, colour, steps, values).

    Each series is one ``<polyline class="curve">`` with one point per step (long runs: per bucket
    of steps, said in the title); series of few points also get a dot per point whose tooltip
    holds the exact value (dev scores are evaluated every few hundred steps).
    """
    left, right, top, bottom = 64, 12, 34, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    thinned = [(label, colour, *thin_curve(steps, values)) for label, colour, steps, values in series]
    xs = [x for *_, px, _, _ in thinned for x in px]
    ys = [y for *_, _, py, _ in thinned for y in py]
    x_min, x_max = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y_min, y_max = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if x_max == x_min:
        x_min, x_max = x_min - 1, x_max + 1
    if y_max == y_min:
        pad = abs(y_max) * 0.1 or 1.0
        y_min, y_max = y_min - pad, y_max + pad
    k_max = max((k for *_, k in thinned), default=1)
    shown = title + (f" (mean of every {k_max} steps)" if k_max > 1 else "")

    def px(x: float) -> float:
        return left + plot_w * (x - x_min) / (x_max - x_min)

    def py(y: float) -> float:
        return top + plot_h * (y_max - y) / (y_max - y_min)

    parts = _svg_open("chart curves", shown, width, height, left, 13)
    for tick in _nice_ticks(y_min, y_max):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(tick):.1f}" y2="{py(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" fill="#555">{tick:.3g}</text>')
    for tick in _nice_ticks(x_min, x_max, min_step=1.0):  # steps are whole numbers
        parts.append(f'<text x="{px(tick):.1f}" y="{top + plot_h + 14}" text-anchor="middle" fill="#555">{tick:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#555">step</text>')
    if y_label:
        parts.append(f'<text x="12" y="{top + plot_h / 2:.1f}" text-anchor="middle" fill="#555" '
                     f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>')
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#333"/>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>')
    for label, colour, cx, cy, _k in thinned:
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(cx, cy))
        parts.append(f'<polyline class="curve" points="{points}" fill="none" stroke="{colour}" stroke-width="1.5">'
                     f"<title>{escape(label)}</title></polyline>")
        if len(cx) <= 50:
            for x, y in zip(cx, cy):
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}">'
                             f"<title>{escape(label)} — step {x:g}: {y:.4g}</title></circle>")
    parts.append("</svg>")
    return "\n".join(parts)
