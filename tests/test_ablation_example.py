"""examples/ablation-offline.yaml, the paper's data ablation in miniature, validates and plans offline:
two bases × three mixtures (synthetic-only, SciFact-only, both) + the bases, on four ../shared/data
tasks; one generate step feeds the four trainings that read synthetic data, and SciFact-only
trainings wait for no generation. The full run is measured in docs/ablation.md, not here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import cli, require

EXAMPLE = REPO / "examples" / "ablation-offline.yaml"


def test_ablation_example_validates_and_plans_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require((REPO.parent / "shared" / "data" / "scifact").is_dir(), "../shared/data")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("validate", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "8 model(s) × 4 task(s) = 32 cell(s); steps: 1 generate, 6 train, 32 evaluate" in result.output
    result = cli("plan", str(EXAMPLE), "-o", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "39 of 39 step(s) to run" in out
    for model in ("minilm", "smollm2"):
        assert re.search(rf"\[to run\] train {model}-synthetic key=\w+ after generate synthetic", out)
        assert re.search(rf"\[to run\] train {model}-mixed key=\w+ after generate synthetic", out)
        assert re.search(rf"\[to run\] train {model}-scifact key=\w+  —", out)  # no generated input
    assert "100 LLM calls (4 brainstorm + 96 examples)" in out and "$0 (local)" in out
