"""Reading JSONL and turning a bad row into one clear error (file, 1-based line, field, fix).

Every loader reads its rows through here so a malformed line, a missing field and a wrong type all
read the same way, whichever source they come from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from inputio import field_problem, iter_json_objects
from trainers.errors import TrainInputError


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise TrainInputError(path, None, f"{what} not found", fix)
    return path


def _line_error(path: Path, line: int | None, problem: str, fix: str) -> TrainInputError:
    return TrainInputError(path, None, problem, fix, line=line)


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, JSON object) for each non-blank line; raise on malformed lines."""
    return iter_json_objects(path, _line_error)


def validate_row(model: type[BaseModel], obj: dict[str, Any], path: Path | str, line: int, fix: str) -> Any:
    """Validate one row against a pydantic model; the first error becomes a TrainInputError.

    The wording comes from ``inputio.field_problem`` (the one translation every package uses); the
    fix is the row format the caller describes, except for an unknown field, whose fix names the
    closest allowed field.
    """
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        found = field_problem(exc, allowed=list(model.model_fields))
        raise TrainInputError(path, found.field, found.problem, found.fix if found.kind == "extra_forbidden" else fix,
                              line=line) from None
