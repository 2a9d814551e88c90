"""Issue 19 items 3-4: a report says whether a trained model's difference from its base is more than
noise, and shows how it was trained.

The run folder is a test double written file by file (tests/leaderboards_fixtures.py): SciFact with
300 queries where the trained model is +0.1 on every query, XQuADRetrieval en/de (40 queries each)
identical for both models, STSBenchmark with no per-query scores; a train step with 5 steps,
metrics.jsonl, 2 processes on CUDA for 1800 s and two generate steps ($3.25 + $0.75).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import cli
from leaderboards.commands import compare, report
from leaderboards.errors import LeaderboardInputError
from leaderboards.render_training import CURVES_NOTE
from leaderboards.significance import holm_adjust, paired_test, stratified_paired_test
from leaderboards.training_record import read_metrics
from leaderboards_fixtures import (BASE, BASE_REV, DEV, LOSSES, LRS, METRIC_LOSSES, TRAIN_KEY, TRAINED, TRAINED_REV,
                                   revision_dir, trained_run_queries, write_trained_run)

P_MIN = 1 / 10_001  # 10,000 resamples, none as extreme as the observed difference


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trained_run(tmp_path_factory.mktemp("trained") / "run")


def _rows(run: Path) -> dict[str, dict]:
    (table,) = json.loads(report(run, "json", ["none"], None, None))["trained_vs_base"]
    assert (table["baseline"], table["candidate"]) == (BASE, TRAINED)
    return {(r["task"] or r["category"]) + (f" {r['split']}/{r['subset']}" if r["level"] == "score" else ""): r
            for r in table["rows"]} | {"_table": table}


def test_better_on_every_query_is_significant_after_holm_and_identical_is_p_1(run: Path) -> None:
    rows = _rows(run)
    sci = rows["SciFact"]
    assert sci["delta"] == pytest.approx(0.1) and sci["n_queries"] == 300
    assert sci["p_value"] == pytest.approx(P_MIN) and sci["ci_low"] == pytest.approx(0.1) == sci["ci_high"]
    assert sci["p_adjusted"] == pytest.approx(5 * P_MIN) and sci["significant"]
    for name in ("XQuADRetrieval", "XQuADRetrieval validation/en", "XQuADRetrieval validation/de"):
        row = rows[name]
        assert row["delta"] == 0.0 and row["p_value"] == 1.0 and row["p_adjusted"] == 1.0 and not row["significant"]
    assert rows["XQuADRetrieval"]["n_queries"] == 80
    # the category's own mean Δ (SciFact and XQuAD weighted 1/2 each, as the average weights them), tested
    retrieval = rows["Retrieval"]
    assert retrieval["level"] == "category" and retrieval["delta"] == pytest.approx(0.05)
    assert retrieval["p_value"] == pytest.approx(P_MIN) and retrieval["significant"] and retrieval["n_queries"] == 380


def test_no_per_query_scores_is_said_not_invented(run: Path) -> None:
    rows = _rows(run)
    for name in ("STSBenchmark", "STS"):
        assert rows[name]["delta"] == pytest.approx(0.8321 - 0.8203)
        assert rows[name]["p_value"] is None and rows[name]["note"] == "no per-query scores" and not rows[name]["significant"]
    overall = rows["Overall"]
    assert overall["p_value"] is None and overall["note"] == "no per-query scores for 1 of 4 scores"


def test_holm_matches_a_hand_computation(run: Path) -> None:
    # p sorted 0.01 < 0.03 < 0.04 < 0.5: 4·0.01 = 0.04; 3·0.03 = 0.09; max(0.09, 2·0.04) = 0.09; max(0.09, 0.5)
    assert holm_adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    rows = _rows(run)
    # 5 distinct tests: SciFact, XQuAD, XQuAD/en, XQuAD/de, Retrieval (STS and Overall have no per-query scores)
    assert rows["_table"]["tests"] == 5
    raw = {n: r["p_value"] for n, r in rows.items() if n != "_table" and r["p_value"] is not None}
    assert sorted(raw.values()) == pytest.approx([P_MIN, P_MIN, 1.0, 1.0, 1.0])
    # hand: 5·P_MIN, max(5·P_MIN, 4·P_MIN), then 3·1, 2·1, 1·1 capped at 1
    assert rows["SciFact"]["p_adjusted"] == pytest.approx(5 * P_MIN) == rows["Retrieval"]["p_adjusted"]


def test_markdown_section_shows_the_numbers_and_says_alpha(run: Path) -> None:
    text = report(run, "markdown", ["none"], None, None)
    section = text.split("## Trained models vs their bases")[1].split("## Training")[0]
    base_sci = 100 * np.mean(list(trained_run_queries()[BASE][("SciFact", "test", "default")].values()))
    assert (f"| SciFact | Retrieval | {base_sci:.2f} | {base_sci + 10:.2f} | +10.00 | [+10.00, +10.00] | 300 | "
            "1.0e-04 | 5.0e-04 | ✱ |") in section
    assert "| ↳ validation/de | Retrieval |" in section and "| 1 | 1 |  |" in section
    assert "| STSBenchmark | STS | 82.03 | 83.21 | +1.18 | — | — | no per-query scores | — |  |" in section
    assert "α = 0.05 after Holm" in section and "5 distinct tests" in section and "2 of 8 rows significant" in section


def test_stratified_test_is_the_plain_test_for_one_score_and_tests_the_shown_mean() -> None:
    rng = np.random.default_rng(3)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.random(50))}
    cand = {q: v + float(rng.normal(0.02, 0.1)) for q, v in base.items()}
    one = stratified_paired_test([(base, cand, 1.0)], alternative="two-sided", n_resamples=2000, seed=1)
    assert one == paired_test(base, cand, alternative="two-sided", n_resamples=2000, seed=1)
    # 10 queries +0.2 and 30 queries ±0: equal weights give the average of the two means (0.1), not the pooled 0.05
    a = {f"a{i}": 0.5 for i in range(10)}
    b = {f"b{i}": 0.5 for i in range(30)}
    result = stratified_paired_test([(a, {q: 0.7 for q in a}, 1.0), (b, b, 1.0)], alternative="two-sided", n_resamples=2000)
    assert result is not None and result.mean_delta == pytest.approx(0.1) and result.n_queries == 40
    assert result.p_value == pytest.approx(1 / 2001 * 5, abs=4 / 2001)  # ±0.2 on 10 queries: 2/1024 flips match
    assert stratified_paired_test([(a, {}, 1.0), (b, b, 1.0)]) is None  # a score without shared queries: no test


def test_compare_any_two_models_of_the_run(run: Path) -> None:
    result = cli("report", str(run), "--compare", TRAINED, f"{BASE}@{BASE_REV}")  # A = trained, B = base
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"# {BASE} vs {TRAINED}: run")
    assert re.search(r"\| SciFact \| Retrieval \| [\d.]+ \| [\d.]+ \| -10\.00 \| \[-10\.00, -10\.00\] \| 300 \| 1\.0e-04 \| 5\.0e-04 \| ✱ \|",
                     result.output)
    rows = list(csv.DictReader(io.StringIO(compare(run, BASE, TRAINED, "csv"))))
    assert [(r["level"], r["task"] or r["category"]) for r in rows][:2] == [("task", "SciFact"), ("task", "XQuADRetrieval")]
    assert float(rows[0]["delta"]) == pytest.approx(0.1) and rows[0]["significant"] == "True"
    assert rows[0]["baseline"] == BASE and rows[0]["candidate"] == TRAINED
    html = compare(run, BASE, f"{TRAINED}@{TRAINED_REV}", "html")
    assert html.startswith("<!DOCTYPE html>") and html.count('<tr class="task sig">') == 1

    bad = cli("report", str(run), "--compare", BASE, "minilm-typo")
    assert bad.exit_code == 2 and "minilm-typo" in bad.output and f"{TRAINED}@{TRAINED_REV}" in bad.output
    with pytest.raises(LeaderboardInputError, match="names one model twice"):
        compare(run, BASE, f"{BASE}@{BASE_REV}")


def test_no_comparison_when_the_base_was_evaluated_with_other_weights(tmp_path: Path) -> None:
    run = write_trained_run(tmp_path / "run", base_content="path:" + "d" * 64)
    text = report(run, "markdown", ["none"], None, None)
    assert "## Trained models vs their bases" not in text
    assert f"{TRAINED}@{TRAINED_REV}: its base 'minilm' was not evaluated in this run (or with other weights)" in text
    assert "## Training" in text  # how it was trained is shown all the same


def test_training_table_has_the_mixture_time_and_cost(run: Path) -> None:
    text = report(run, "markdown", ["none"], None, None)
    section = text.split("## Training")[1].split("## Per task")[0]
    assert CURVES_NOTE in section
    for line in ("| steps | 5 |", "| wall time | 30.0 min |", "| GPU-hours | 1 (wall time × 2 process(es) on CUDA) |",
                 "| generation $ | $4.00 (generate steps' cost_usd) |", "| examples per source | msmarco: 1,200, synthetic: 800 |",
                 "| curves from | metrics.jsonl |", f"| train step | train {TRAINED} ({TRAIN_KEY[:12]}) |",
                 "| generate set-a | 800 | $3.25 | short-long: 500, long-short: 300 | en: 600, de: 200 |",
                 "| generate set-b | 100 | $0.75 | sts: 100 | fr: 100 |"):
        assert line in section, line
    assert "<svg" not in text


def _curves(html: str) -> dict[str, list[str]]:
    """Title of each curve chart -> the tooltips of its points."""
    charts = re.findall(r'<svg[^>]*class="chart curves"[^>]*aria-label="([^"]+)".*?</svg>', html, flags=re.S)
    bodies = re.findall(r'<svg[^>]*class="chart curves".*?</svg>', html, flags=re.S)
    return {title: body for title, body in zip(charts, bodies)}  # type: ignore[misc]


def _points(svg: str) -> list[int]:
    return [len(p.split()) for p in re.findall(r'<polyline class="curve" points="([^"]+)"', svg)]


def test_html_draws_loss_lr_and_dev_curves_with_one_point_per_step(run: Path) -> None:
    html = report(run, "html", ["none"], None, None)
    charts = _curves(html)
    assert list(charts) == [f"{TRAINED}: training loss", f"{TRAINED}: learning rate", f"{TRAINED}: dev main score"]
    loss, lr, dev = charts.values()
    assert _points(loss) == [len(METRIC_LOSSES)] and _points(lr) == [len(LRS)] and _points(dev) == [len(DEV)]
    assert "loss — step 1: 2.1</title>" in loss  # metrics.jsonl, not training.json (2.0)
    assert "learning rate — step 3: 0.0003</title>" in lr and "SciFact — step 5: 0.65</title>" in dev
    ys = [float(y) for y in re.findall(r"[\d.]+,([\d.]+)", re.search(r'points="([^"]+)"', loss).group(1))]
    assert ys == sorted(ys)  # a falling loss is drawn going down (SVG y grows downwards)
    assert '<h2 id="trained-vs-base">' in html and "<td>5.0e-04</td>" in html


def test_without_metrics_jsonl_the_loss_comes_from_training_json(tmp_path: Path) -> None:
    run = write_trained_run(tmp_path / "run", metrics=False)
    html = report(run, "html", ["none"], None, None)
    charts = _curves(html)
    assert list(charts) == [f"{TRAINED}: training loss"]
    assert _points(charts[f"{TRAINED}: training loss"]) == [len(LOSSES)] and "loss — step 1: 2</title>" in html
    assert "unknown: no metrics.jsonl" in html


def test_metrics_jsonl_cut_off_last_line_is_left_out_a_broken_middle_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"kind": "train", "step": 2, "lo')
    assert [m.step for m in read_metrics(path)] == [1]
    path.write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"kind": "train", "st\n{"kind": "train", "step": 3}\n')
    with pytest.raises(LeaderboardInputError, match=r"line 2.*not valid JSON"):
        read_metrics(path)


def test_results_copied_without_steps_still_report_and_say_so(tmp_path: Path) -> None:
    run = write_trained_run(tmp_path / "run")
    import shutil

    shutil.rmtree(run / "steps")
    text = report(run, "markdown", ["none"], None, None)
    assert "## Trained models vs their bases" in text  # pairing needs only the results' provenance
    assert "train step folder" in text and "not found (results copied without steps/?)" in text
    assert revision_dir(run, TRAINED, TRAINED_REV).is_dir()


def test_a_long_run_is_drawn_as_bucket_means_and_says_so() -> None:
    from leaderboards.svg_charts import line_chart, thin_curve

    steps = list(range(1, 2501))
    xs, ys, k = thin_curve(steps, [float(s) for s in steps])
    assert k == 3 and len(xs) == 834 and (xs[0], ys[0]) == (2.0, 2.0) and (xs[-1], ys[-1]) == (2500.0, 2500.0)
    svg = line_chart("loss", [("loss", "#000", steps, [1.0 / s for s in steps])])
    assert _points(svg) == [834] and 'aria-label="loss (mean of every 3 steps)"' in svg
    assert "<circle" not in svg  # dots only for short series (dev scores)


def test_a_metrics_line_without_its_step_names_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"kind": "train", "loss": 1.9}\n')
    with pytest.raises(LeaderboardInputError, match=r"line 2: step"):
        read_metrics(path)
