"""The one error type for bad user input.

Every message names the file, the field (or line) and the fix, because a researcher reading a
failed run at 2 a.m. should not have to open the source to learn what to change. The CLI maps
this error to exit code 2 and guarantees nothing was written before it is raised.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input: a matrix, a data folder or a model reference that cannot be used as given."""

    def __init__(self, file: str | Path | None, field: str | None, problem: str, fix: str) -> None:
        self.file = str(file) if file is not None else None
        self.field = field
        self.problem = problem
        self.fix = fix
        where = self.file or "<input>"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {problem}. Fix: {fix}")
