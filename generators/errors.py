"""Errors the CLI maps to exit codes.

A bad config is the user's to fix, not a crash: the harness turns `GeneratorInputError` into exit
code 2 and prints its message, so every message names the file, the field and the fix.
"""

from __future__ import annotations

from inputio import InputProblem


class GeneratorInputError(InputProblem):
    """A config or input file the generator cannot use; the message says where and how to fix it."""

    field_format = "field '{field}'"
    unnamed_file = "<config>"


class BackendUnavailableError(RuntimeError):
    """A backend cannot start at all (missing model file, missing optional package, no API key)."""



class GenerationFailedError(GeneratorInputError):
    """Too many calls failed (all of them, or more than the config's bound): the job's data is not usable.

    A subclass of the input error because the fix is the user's (endpoint, model, response_format,
    key), so the CLI already turns it into exit code 2 with this one line and nothing written; the
    response cache keeps every call that did succeed, so a re-run after the fix pays only for the rest.
    """
