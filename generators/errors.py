"""Errors the CLI maps to exit codes.

A bad config is the user's to fix, not a crash: the harness turns `GeneratorInputError` into exit
code 2 and prints its message, so every message names the file, the field and the fix.
"""

from __future__ import annotations

from pathlib import Path


class GeneratorInputError(ValueError):
    """A config or input file the generator cannot use; the message says where and how to fix it."""

    def __init__(self, path: Path | str | None, field: str | None, problem: str, fix: str, *, line: int | None = None) -> None:
        where = str(path) if path is not None else "<config>"
        if line is not None:
            where += f", line {line}"  # a data file's 1-based line, as an editor shows it
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {problem}. Fix: {fix}")
        self.path = path
        self.field = field
        self.line = line
        self.problem = problem
        self.fix = fix


class BackendUnavailableError(RuntimeError):
    """A backend cannot start at all (missing model file, missing optional package, no API key)."""



class GenerationFailedError(GeneratorInputError):
    """Too many calls failed (all of them, or more than the config's bound): the job's data is not usable.

    A subclass of the input error because the fix is the user's (endpoint, model, response_format,
    key), so the CLI already turns it into exit code 2 with this one line and nothing written; the
    response store keeps every call that did succeed, so a re-run after the fix pays only for the rest.
    """
