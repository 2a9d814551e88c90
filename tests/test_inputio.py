"""The one JSONL reader every package uses (``inputio``): line numbers as an editor shows them,
blank lines skipped, a truncated gzip an input error, and each package's own error type."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from generators.contamination import ContaminationFilter
from generators.errors import GeneratorInputError
from harness.errors import InputError
from harness.evaluation.data_rows import QueryRow
from harness.evaluation.local_data import iter_jsonl as harness_rows
from trainers.data.jsonl import iter_jsonl as trainer_rows
from trainers.errors import TrainInputError


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_blank_lines_are_skipped_and_numbers_are_file_lines(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", '{"_id": "a", "text": "x"}\n\n  \n{"_id": "b", "text": "y"}\n')
    assert [(n, row["_id"]) for n, row in trainer_rows(path)] == [(1, "a"), (4, "b")]
    assert [(n, row.id) for n, row in harness_rows(path, QueryRow)] == [(1, "a"), (4, "b")]


@pytest.mark.parametrize("bad, problem", [('{"_id": "a", "text": }', "not valid JSON"), ('["a", "b"]', "a JSON list, not an object")])
def test_bad_line_is_each_packages_own_error_naming_the_line(tmp_path: Path, bad: str, problem: str) -> None:
    path = _write(tmp_path / "q.jsonl", '{"_id": "a", "text": "x"}\n\n' + bad + "\n")
    with pytest.raises(TrainInputError) as train_err:
        list(trainer_rows(path))
    assert f"{path}, line 3: {problem}" in str(train_err.value) and train_err.value.line == 3
    with pytest.raises(InputError) as harness_err:
        list(harness_rows(path, QueryRow))
    assert f"{path}: line 3: {problem}" in str(harness_err.value)
    with pytest.raises(GeneratorInputError) as gen_err:
        ContaminationFilter([path])
    message = str(gen_err.value)
    assert f"{path}, line 3: {problem}" in message and "in an eval file given for contamination" in message


def test_truncated_gzip_is_an_input_error_not_a_traceback(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(b'{"_id": "%d", "text": "t"}\n' % i for i in range(5000)))
    path = tmp_path / "corpus.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TrainInputError, match="cannot be read after line"):
        list(trainer_rows(path))
    with pytest.raises(InputError, match="cannot be read"):
        list(harness_rows(path, QueryRow))
