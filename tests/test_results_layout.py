"""Results follow the MTEB results-repository layout, are strict JSON, and carry provenance."""

from __future__ import annotations

from pathlib import Path

from mteb.results import TaskResult

from tests.helpers import cli, read_json


def test_results_layout_provenance_and_per_query(smoke_copy: Path, tmp_path: Path) -> None:
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 0, result.output
    model_dirs = list((tmp_path / "run" / "results").iterdir())
    assert [d.name for d in model_dirs] == ["all-MiniLM-L6-v2"]
    (rev_dir,) = list(model_dirs[0].iterdir())
    names = sorted(p.name for p in rev_dir.glob("*.json"))
    assert names == ["HarnessSmokeBitextMining.json", "HarnessSmokeClassification.json", "HarnessSmokeRetrieval.json",
                     "HarnessSmokeSTS.json", "model_meta.json"]
    meta = read_json(rev_dir / "model_meta.json")
    assert meta["name"] == "all-MiniLM-L6-v2" and meta["revision"] == rev_dir.name

    obj = read_json(rev_dir / "HarnessSmokeRetrieval.json")  # strict: NaN would raise
    prov = obj["harness_provenance"]
    assert prov["packages"]["mteb"] and prov["packages"]["torch"]
    assert prov["model"]["encode"]["tokenizer"]["class"]
    assert "adds_bos" in prov["model"]["encode"]["tokenizer"]
    assert prov["task"]["subsets"] == ["en", "de", "fr"]
    loaded = TaskResult.from_disk(rev_dir / "HarnessSmokeRetrieval.json")  # mteb's own reader
    assert loaded.get_score() > 0.9

    pq = read_json(rev_dir / "per_query" / "HarnessSmokeRetrieval.json")
    assert pq["main_score"] == "ndcg_at_10"
    en = pq["scores"]["test"]["en"]
    assert len(en) == 8 and all(0.0 <= v <= 1.0 for v in en.values())
    mean = sum(en.values()) / len(en)
    en_row = next(r for r in obj["scores"]["test"] if r["hf_subset"] == "en")
    assert abs(mean - en_row["main_score"]) < 1e-5, "per-query scores average to mteb's main score"
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_plan_shows_cached_after_run(smoke_copy: Path) -> None:
    assert "4 of 4 step(s) to run" in cli("plan", str(smoke_copy)).output
    assert cli("run", str(smoke_copy), "--no-progress").exit_code == 0
    out = cli("plan", str(smoke_copy)).output
    assert "0 of 4 step(s) to run" in out and "[cached]" in out


def test_failing_cell_reported_others_run(tmp_path: Path, smoke_copy: Path) -> None:
    """A model that cannot load fails its cells (exit 1) while the other model's cells complete."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "modules.json").write_text("[]")  # a sentence-transformers dir with nothing in it
    text = smoke_copy.read_text().replace("models:\n", f"models:\n  - name: broken\n    model: {broken}\n", 1)
    smoke_copy.write_text(text)
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 1, result.output
    assert "FAILED broken × HarnessSmokeSTS" in result.output
    assert "done all-MiniLM-L6-v2 × HarnessSmokeSTS" in result.output
    assert (tmp_path / "run" / "logs" / "broken__HarnessSmokeSTS.log").is_file()
