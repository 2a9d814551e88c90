"""The one error type for bad user input.

Every message names the file, the field (or line) and the fix, because a researcher reading a
failed run at 2 a.m. should not have to open the source to learn what to change. The CLI maps
this error to exit code 2 and guarantees nothing was written before it is raised.
"""

from __future__ import annotations

from inputio import InputProblem


class InputError(InputProblem):
    """Bad input: a matrix, a data folder or a model reference that cannot be used as given."""
