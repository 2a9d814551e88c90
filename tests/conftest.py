"""Shared fixtures: where the real datasets are, and quiet, isolated mteb/HF caches."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import require

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SMOKE_MATRIX = REPO / "harness" / "example_matrices" / "smoke.yaml"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path_factory.getbasetemp() / "mteb-cache"))
    monkeypatch.delenv("HARNESS_CACHE_DIR", raising=False)
    monkeypatch.setenv("HARNESS_FINGERPRINT_MEMO", str(tmp_path_factory.getbasetemp() / "fingerprints.sqlite"))


def shared_data() -> Path:
    """The real datasets; absent on a user's machine (skip), but never allowed to be absent in CI."""
    require(SHARED_DATA.is_dir(), f"{SHARED_DATA} (the real evaluation datasets, shipped beside the repo as ../shared/data)")
    return SHARED_DATA


@pytest.fixture
def smoke_copy(tmp_path: Path) -> Path:
    """A copy of the smoke matrix and its data in tmp_path, so tests may edit either."""
    data = tmp_path / "smoke_data"
    shutil.copytree(REPO / "harness" / "smoke_data", data)
    text = SMOKE_MATRIX.read_text().replace("../smoke_data/", "smoke_data/")
    path = tmp_path / "smoke.yaml"
    path.write_text(text + f"output: {tmp_path / 'run'}\n")
    return path
