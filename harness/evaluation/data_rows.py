"""The shape of one line of each local data file, as strict pydantic models.

A data file is user input like the matrix, and a wrong type in it does not crash: it changes a
score. ``str(None)`` turned a null ``sentence1`` into the text "None" (STSBenchmark 0.82032 ->
0.82013), and ``float("high")`` only failed deep inside a run. So every field the readers use is
declared here with its type, in strict mode (no "3.5" for 3.5, no true for 1, no null for a
string), and a line that does not fit is an :class:`~harness.errors.InputError` naming file, line
and field. Extra fields (``metadata``, ``label_text``, provenance columns) are allowed and ignored.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

DocId = Annotated[str, StringConstraints(min_length=1)] | int
"""BEIR ids are strings; some converted corpora write integers. Either is read as its string form."""


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True, populate_by_name=True)


class CorpusRow(_Row):
    id: DocId = Field(alias="_id")
    title: str | None = None
    text: str


class QueryRow(_Row):
    id: DocId = Field(alias="_id")
    text: str


class STSRow(_Row):
    sentence1: str
    sentence2: str
    score: float

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ClassificationRow(_Row):
    text: str
    label: int | Annotated[str, StringConstraints(min_length=1)]


class BitextRow(_Row):
    src: str
    tgt: str


_KINDS = {str: "a string", float: "a number", int: "an integer", str | None: "a string or null"}


def field_kind(model: type[_Row], field: str) -> str:
    """``"a string"`` for ``sentence1`` — what an error says the field should have been."""
    info = next((i for n, i in model.model_fields.items() if field in (n, i.alias)), None)
    if info is None:
        return "a value"
    return _KINDS.get(info.annotation, "a non-empty string or an integer")  # type: ignore[arg-type]


def describe_fields(model: type[_Row]) -> str:
    """``sentence1 (a string), score (a number)`` — the fix text of an error names what every line needs."""
    return ", ".join(f"{info.alias or name} ({field_kind(model, info.alias or name)})"
                     for name, info in model.model_fields.items() if info.is_required())
