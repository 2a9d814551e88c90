"""A user's own JSONL of pairs or triplets: ``{"query", "positive", "negatives": [...], "instruction"?}``.

``negative`` (one string) is accepted as a shorthand for ``negatives: [one]``; unknown keys are
rejected so a typo ("postive") fails loudly instead of silently training on nothing.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from trainers.data.jsonl import iter_jsonl, require_file, validate_row
from trainers.errors import TrainInputError
from trainers.examples import TrainExample

_FIX = 'each line must be {"query": str, "positive": str, "negatives": [str, ...] or "negative": str, "instruction": str (optional)}'


class PairRow(BaseModel):
    """One line of a pairs/triplets file."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr
    positive: StrictStr
    negatives: list[StrictStr] = Field(default_factory=list)
    negative: StrictStr | None = None
    instruction: StrictStr | None = None

    @field_validator("query", "positive", "negative")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("blank text (only whitespace)")
        return v

    @field_validator("negatives")
    @classmethod
    def _no_blank_negative(cls, v: list[str]) -> list[str]:
        blank = [i for i, text in enumerate(v) if not text.strip()]
        if blank:
            raise ValueError(f"negative {blank[0]} is blank text (only whitespace)")
        return v


def load_pairs(
    path: Path,
    *,
    source: str,
    instruction: str | None = None,
    max_examples: int | None = None,
) -> list[TrainExample]:
    """Load pairs/triplets. Instruction precedence: ``instruction`` override > row's own > ""."""
    path = require_file(Path(path), "pairs file", "point `path` at a JSONL file of {query, positive, negatives} rows")
    out: list[TrainExample] = []
    for line, obj in iter_jsonl(path):
        if max_examples is not None and len(out) >= max_examples:
            break
        row: PairRow = validate_row(PairRow, obj, path, line, _FIX)
        if row.negative is not None and row.negatives:
            raise TrainInputError(
                path, "negative", "both 'negative' and 'negatives' given",
                "use 'negatives' (a list) alone, or 'negative' (one string) alone", line=line,
            )
        negs = list(row.negatives) if row.negative is None else [row.negative]
        out.append(
            TrainExample(
                query=row.query,
                positive=row.positive,
                negatives=tuple(negs),
                instruction=instruction if instruction is not None else (row.instruction or ""),
                source=source,
            )
        )
    return out
