"""Issue #8 item 9: results are usable by mteb's own tools — ``mteb.ResultCache(cache_path=RUN_DIR)`` (the run
directory, not RUN_DIR/results) loads a run, and model_meta.json carries embed_dim, n_parameters and
max_tokens of the loaded model. Item 5 on the same run: every file it writes has the mode open() would
give under the user's umask (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers import cli, read_json


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("meta") / "run"
    old = os.umask(0o027)
    try:
        result = cli("run", "--example", "smoke", "-o", str(out), "--no-progress")
    finally:
        os.umask(old)
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


def test_every_file_of_the_run_follows_the_umask(smoke_run: Path) -> None:
    files = [p for p in smoke_run.rglob("*") if p.is_file()]
    kinds = {p.name for p in files}
    assert {"model_meta.json", "HarnessSmokeSTS.json", "manifest.json", "run.json", "embeddings.sqlite"} <= kinds
    modes = {str(p.relative_to(smoke_run)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o640"}, modes
