"""Issue #8 item 9: results are usable by mteb's own tools — ``mteb.ResultCache(cache_path=RUN_DIR)`` (the run
directory, not RUN_DIR/results) loads a run, and model_meta.json carries embed_dim, n_parameters and
max_tokens of the loaded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import cli, read_json


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "run"
    result = cli("run", "--example", "smoke", "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    return out


def test_model_meta_is_filled_from_the_loaded_model(smoke_run: Path) -> None:
    (meta_path,) = (smoke_run / "results").glob("*/*/model_meta.json")
    meta = read_json(meta_path)
    # all-MiniLM-L6-v2: 384-d, 22,713,216 parameters (BERT, 6 layers), max_seq_length 256
    assert (meta["embed_dim"], meta["n_parameters"], meta["max_tokens"]) == (384, 22_713_216, 256)


def test_mteb_result_cache_reads_the_run_directory(smoke_run: Path) -> None:
    from mteb.cache import ResultCache

    loaded = ResultCache(cache_path=smoke_run).load_results(include_remote=False)
    (model,) = loaded.model_results
    assert model.model_name == "all-MiniLM-L6-v2"
    assert sorted(t.task_name for t in model.task_results) == [
        "HarnessSmokeBitextMining", "HarnessSmokeClassification", "HarnessSmokeRetrieval", "HarnessSmokeSTS"]
    # The documented path is the run directory: its results/ folder is not a cache root for mteb.
    assert ResultCache(cache_path=smoke_run / "results").load_results(include_remote=False).model_results == []
