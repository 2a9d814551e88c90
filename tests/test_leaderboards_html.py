"""The HTML report as a person sees it: rendered by headless Chromium, screenshotted, and its DOM checked
for the tables and the plots (per-category and per-language bars) with real content."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require

from leaderboards.commands import report
from leaderboards_fixtures import DEV, LRS, METRIC_LOSSES, MINILM, TRAINED, write_run, write_trained_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.usefixtures("chromium_required")


@pytest.fixture
def chromium_required() -> None:
    require(CHROMIUM is not None, "headless Chromium (Debian: apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def html_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_run(tmp_path_factory.mktemp("html") / "run")
    out = run / "report.html"
    report(run, "html", None, None, out)
    return out


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=90)


def test_html_is_self_contained(html_report: Path) -> None:
    html = html_report.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report must not load anything"
    assert "<script" not in html
    assert html.count("<svg") == 1 + 2  # categories, then Tatoeba and XQuAD per language


@needs_chromium
def test_screenshot_shows_tables_and_plots(html_report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    proc = _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2000", html_report.as_uri())
    assert png.is_file(), proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2000)
    assert len(data) > 50_000, "a blank page compresses to a few kB; tables and bars do not"
    shutil.copy(png, html_report.with_suffix(".png"))  # kept beside the report for a human to look at


@needs_chromium
def test_rendered_dom_has_tables_and_svg_plots_with_content(html_report: Path, tmp_path: Path) -> None:
    proc = _chromium(tmp_path, "--dump-dom", html_report.as_uri())
    dom = proc.stdout
    assert "<table" in dom, proc.stderr[-2000:]
    tables = re.findall(r"<table>.*?</table>", dom, flags=re.S)
    assert len(tables) >= 4  # summary, per task, BEIR, per language
    rows = [len(re.findall(r"<tr", t)) for t in tables]
    assert min(rows) >= 2 and max(rows) == 13  # header + run + 11 reference models
    svgs = re.findall(r"<svg.*?</svg>", dom, flags=re.S)
    assert len(svgs) == 3
    assert "MTEB category averages" in svgs[0] and "per language" in svgs[1]
    for svg in svgs:
        heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"', svg)]
        assert len(heights) >= 10 and max(heights) > 50
    assert f"{MINILM} — SciFact" not in dom  # bars are per category, not per task
    assert "64.51" in dom and "80.04" in dom and "multilingual-e5-large" in dom


@pytest.fixture(scope="module")
def trained_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_trained_run(tmp_path_factory.mktemp("html-trained") / "run")
    out = run / "report.html"
    report(run, "html", ["none"], None, out)
    return out


@needs_chromium
def test_rendered_dom_has_the_paired_table_and_training_curves(trained_report: Path, tmp_path: Path) -> None:
    """The trained-vs-base table and the loss / lr / dev curves as the browser builds them (one point per step)."""
    dom = _chromium(tmp_path, "--dump-dom", trained_report.as_uri()).stdout
    paired = re.search(r'<table class="paired">.*?</table>', dom, flags=re.S)
    assert paired, dom[:2000]
    assert len(re.findall(r'<tr class="(task|category) sig">', paired.group(0))) == 2  # SciFact and Retrieval
    assert "no per-query scores" in paired.group(0)
    curves = re.findall(r'<svg[^>]*class="chart curves".*?</svg>', dom, flags=re.S)
    points = [[len(p.split()) for p in re.findall(r'<polyline class="curve" points="([^"]+)"', svg)] for svg in curves]
    assert points == [[len(METRIC_LOSSES)], [len(LRS)], [len(DEV)]]
    assert all(f"{TRAINED}: " in svg for svg in curves)
    png = tmp_path / "trained.png"
    _chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2400", trained_report.as_uri())
    assert png.is_file() and len(png.read_bytes()) > 50_000
    shutil.copy(png, trained_report.with_suffix(".png"))  # kept beside the report for a human to look at
