"""The units estimates are stated in, and how they read: the one GPU they are measured on, its
peaks, and the formatting of large counts and GPU time (``harness plan`` prints what these return)."""

from __future__ import annotations

PEAK_BF16 = 989e12  # H100 SXM / H200 dense bf16 FLOP/s (docs/benchmarks.md, ../shared/NOTES.md)
PEAK_FP32 = 67e12  # H100 SXM / H200 fp32 without tensor cores: no anchor was measured at fp32
GPU = "H200"  # the MFU anchors were measured on one H200; an H100 SXM shares its bf16 peak


def hours(h: float) -> str:
    if h >= 100:
        return f"{h:,.0f}"
    if h >= 1:
        return f"{h:.1f}"
    return f"{h:.2g}" if h > 0 else "0"


def gpu_time(h: float) -> str:
    """GPU time in the unit that reads best: hours, minutes or seconds of one GPU."""
    if h >= 1:
        return f"{hours(h)} {GPU}-hours"
    if h * 60 >= 1:
        return f"{h * 60:.0f} {GPU}-minutes"
    return f"{h * 3600:.2g} {GPU}-seconds"


def big(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"
