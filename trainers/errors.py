"""The one error type for bad training input (a data config, a data file, a mixture file).

Same shape as ``harness.errors.InputError`` and ``generators.errors.GeneratorInputError`` (trainers
must not import harness, so it is its own class): every message names the file, the line when there
is one (1-based, as an editor shows it), the field, and the fix — a researcher reading a failed run
should not have to open the source to learn what to change. It subclasses ``ValueError`` so callers
that map input errors to exit code 2 can catch one base type.
"""

from __future__ import annotations

from pathlib import Path


class TrainInputError(ValueError):
    """Training input that cannot be used as given; the message says where and how to fix it."""

    def __init__(
        self,
        path: Path | str | None,
        field: str | None,
        problem: str,
        fix: str,
        *,
        line: int | None = None,
    ) -> None:
        where = str(path) if path is not None else "<data config>"
        if line is not None:
            where += f", line {line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}. Fix: {fix}")
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.problem = problem
        self.fix = fix
