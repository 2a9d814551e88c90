"""Reading JSONL and turning a bad row into one clear error (file, 1-based line, field, fix).

Every loader reads its rows through here so a malformed line, a missing field and a wrong type all
read the same way, whichever source they come from.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ValidationError

from trainers.errors import TrainInputError


def open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file, transparently un-gzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise TrainInputError(path, None, f"{what} not found", fix)
    return path


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, JSON object) for each non-blank line; raise on malformed lines."""
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainInputError(
                    path, None, f"not valid JSON ({exc.msg} at column {exc.colno})",
                    "write one JSON object per line (JSONL); check quoting and escapes on this line",
                    line=lineno,
                ) from None
            if not isinstance(obj, dict):
                raise TrainInputError(
                    path, None, f"expected a JSON object, got {type(obj).__name__}",
                    "write one JSON object per line, e.g. {\"query\": ..., \"positive\": ...}", line=lineno,
                )
            yield lineno, obj


def validate_row(model: type[BaseModel], obj: dict[str, Any], path: Path | str, line: int, fix: str) -> Any:
    """Validate one row against a pydantic model; the first error becomes a TrainInputError."""
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        kind = err["type"]
        if kind == "missing":
            problem = "required field is missing"
        elif kind == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            problem = f"unknown field (allowed: {allowed})"
        else:
            problem = err["msg"].rstrip(".")
        raise TrainInputError(path, field, problem, fix, line=line) from None
