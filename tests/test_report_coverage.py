"""Issue #8 item 2: reports are never empty or misleading.

The run's own rows always show; a model lacking part of a category gets "— (k/n)" there instead of
removing the category for everyone; baselines sharing no task with the run are left out in one line;
rows are sorted by rank, equal displayed scores share a rank, and a zero delta is not red. Ends with
the smoke run's HTML report (default baselines) rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from helpers import cli
from leaderboards.aggregate import competition_ranks
from leaderboards.commands import report
from leaderboards_fixtures import MINILM, MINILM_SCORES, write_run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _summary_rows(markdown: str) -> dict[str, list[str]]:
    section = markdown.split("## Summary")[1].split("\n\n", 2)[1]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()[2:]]
    return {r[1]: r for r in rows}


def test_one_baseline_lacking_tatoeba_does_not_empty_bitext_for_everyone(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [s for s in MINILM_SCORES if s[0] in ("STSBenchmark", "Tatoeba")])
    text = report(run, "markdown", None, None, None)
    header = next(line for line in text.splitlines() if line.startswith("| Rank"))
    assert [c.strip() for c in header.strip("|").split("|")][4:] == ["STS", "BitextMining", "Overall"]
    rows = _summary_rows(text)
    assert rows[MINILM][4:] == ["82.03", "7.89", "44.96"]
    assert rows["intfloat/e5-mistral-7b-instruct"][4:] == ["88.60", "99.47", "94.03"]
    assert rows["openai/text-embedding-ada-002"][4:] == ["83.17", "— (0/1)", "— (1/2)"]
    assert rows["openai/text-embedding-ada-002"][0] == "—"


def test_ranks_follow_displayed_scores_and_order_the_summary(tmp_path: Path) -> None:
    assert competition_ranks({"a": 0.80004, "b": 0.79996, "c": 0.7, "d": None}) == {"a": 1, "b": 1, "c": 3, "d": None}
    text = report(write_run(tmp_path / "run"), "markdown", None, None, None)
    ranks = [r[0] for r in _summary_rows(text).values()]
    numeric = [int(r) for r in ranks if r != "—"]
    assert numeric == sorted(numeric) and ranks[len(numeric):] == ["—"] * (len(ranks) - len(numeric))
    assert ranks.count("9") == 2  # the run and its own MTEB reference row display the same overall


def test_zero_delta_is_not_red(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    other = write_run(tmp_path / "other", [(t, sp, su, l, s - 1e-7) for t, sp, su, l, s in MINILM_SCORES],
                      name="me/retrained", revision="r2")
    html = report(run, "html", [str(other)], None, None)
    assert 'class="delta-neg"' not in html and html.count("±0.00") >= 6


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("smoke")
    result = cli("run", "--example", "smoke", "-o", str(out / "run"), "--no-progress")
    assert result.exit_code == 0, result.output
    html = out / "report.html"
    assert cli("report", str(out / "run"), "--format", "html", "-o", str(html)).exit_code == 0
    return html, report(out / "run", "markdown", None, None, None)


def test_smoke_run_with_default_baselines_shows_its_own_scores(smoke_report: tuple[Path, str]) -> None:
    _html, markdown = smoke_report
    rows = _summary_rows(markdown)
    assert list(rows) == ["all-MiniLM-L6-v2"]
    cells = rows["all-MiniLM-L6-v2"]
    assert cells[0] == "1" and "—" not in cells[4:]
    assert "Left out: 11 baseline models with no score on this run's tasks (" in markdown
    assert markdown.count("Left out:") == 1


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
def test_smoke_html_report_screenshot_shows_the_run(smoke_report: tuple[Path, str], tmp_path: Path) -> None:
    html, markdown = smoke_report
    run_cells = _summary_rows(markdown)["all-MiniLM-L6-v2"][4:]
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p1'}", "--dump-dom", html.as_uri()],
                         capture_output=True, text=True, timeout=90).stdout
    summary = re.search(r'<h2 id="summary">.*?</table>', dom, flags=re.S)
    assert summary, dom[:2000]
    for value in run_cells:  # every category average and the overall, as rendered
        assert f"<td>{value}</td>" in summary.group(0)
    bars = re.findall(r'<rect class="bar"[^>]*height="([\d.]+)"', summary.group(0))
    assert len(bars) == len(run_cells) and min(float(h) for h in bars) > 0  # one bar per category + overall
    png = tmp_path / "smoke-report.png"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p2'}", f"--screenshot={png}",
                           "--window-size=1280,1000", html.as_uri()], capture_output=True, text=True, timeout=90)
    assert png.is_file(), proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (1280, 1000)
    assert len(data) > 30_000, "a blank page compresses to a few kB; a table and a chart do not"
    shutil.copy(png, html.with_suffix(".png"))  # kept beside the report for a human to look at
