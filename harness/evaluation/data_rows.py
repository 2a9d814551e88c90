"""The shape of one line of each local data file, as strict pydantic models.

A data file is user input like the matrix, and a wrong type in it does not crash: it changes a
score. ``str(None)`` turned a null ``sentence1`` into the text "None" (STSBenchmark 0.82032 ->
0.82013), and ``float("high")`` only failed deep inside a run. So every field the readers use is
declared here with its type, in strict mode (no "3.5" for 3.5, no true for 1, no null for a
string), and a line that does not fit is an :class:`~harness.errors.InputError` naming file, line
and field. Extra fields (``metadata``, ``label_text``, provenance columns) are allowed and ignored.

Text that is empty or only whitespace is refused like a null: it passed as a string and was scored
as the empty string (an STS pair of nothing, a query that matches anything). A corpus document is its
title and text joined (as mteb embeds it), so its text may be blank only when its title is not (BEIR
corpora hold title-only documents), and an empty title is the common case, not an error.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

DocId = Annotated[str, StringConstraints(min_length=1)] | int
"""BEIR ids are strings; some converted corpora write integers. Either is read as its string form."""


NOT_BLANK = "must contain text, not only whitespace"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError(NOT_BLANK)
    return value


Text = Annotated[str, AfterValidator(_not_blank)]
"""A text the harness embeds: a string with at least one non-whitespace character."""


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True, populate_by_name=True)


class CorpusRow(_Row):
    id: DocId = Field(alias="_id")
    title: str | None = None
    text: str

    @field_validator("text")
    @classmethod
    def _document_has_text(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and not (info.data.get("title") or "").strip():
            raise ValueError(f"{NOT_BLANK} (it may be blank only when the document's title has text)")
        return value


class QueryRow(_Row):
    id: DocId = Field(alias="_id")
    text: Text


class STSRow(_Row):
    sentence1: Text
    sentence2: Text
    score: float

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ClassificationRow(_Row):
    text: Text
    label: int | Annotated[str, StringConstraints(min_length=1)]


class BitextRow(_Row):
    src: Text
    tgt: Text


_KINDS = {str: "a string", float: "a number", int: "an integer", str | None: "a string or null"}


def field_kind(model: type[_Row], field: str) -> str:
    """``"a string"`` for ``sentence1`` — what an error says the field should have been."""
    info = next((i for n, i in model.model_fields.items() if field in (n, i.alias)), None)
    if info is None:
        return "a value"
    if any(getattr(m, "func", None) is _not_blank for m in info.metadata):
        return "a string with text"
    return _KINDS.get(info.annotation, "a non-empty string or an integer")  # type: ignore[arg-type]


def describe_fields(model: type[_Row]) -> str:
    """``sentence1 (a string), score (a number)`` — the fix text of an error names what every line needs."""
    return ", ".join(f"{info.alias or name} ({field_kind(model, info.alias or name)})"
                     for name, info in model.model_fields.items() if info.is_required())
