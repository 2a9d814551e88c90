"""The one error type for bad training input (a data config, a data file, a mixture file).

Its own subclass of ``inputio.InputProblem`` (trainers must not import harness): every message
names the file, the line when there is one (1-based, as an editor shows it), the field, and the fix.
"""

from __future__ import annotations

from inputio import InputProblem


class TrainInputError(InputProblem):
    """Training input that cannot be used as given; the message says where and how to fix it."""

    field_format = "field '{field}'"
    unnamed_file = "<data config>"
