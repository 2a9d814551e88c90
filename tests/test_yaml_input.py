"""One YAML-error mapping for both config kinds (issue #7 item 8): a syntax error names the file and line, and
both CLIs report it the same way, exit 2."""

from __future__ import annotations

from pathlib import Path

from helpers import cli

BROKEN = "name: x\nmodels:\n  - name: [unclosed\n"


def test_matrix_and_generation_config_report_yaml_errors_alike(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    validate = cli("validate", str(bad))
    generate = cli("generate", str(bad), "-o", str(tmp_path / "out"))
    for result in (validate, generate):
        assert result.exit_code == 2
        assert str(bad) in result.output and "line 4" in result.output and "not valid YAML" in result.output
    assert not (tmp_path / "out").exists()


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    for result in (cli("validate", str(bad)), cli("generate", str(bad))):
        assert result.exit_code == 2 and "top level must be a YAML mapping" in result.output
