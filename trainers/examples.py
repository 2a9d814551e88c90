"""The unit of training data every source is turned into, and its JSON form.

Texts are stored raw, without the E5 template: the trainer formats ``instruction`` into
``Instruct: {task}\\nQuery: {text}`` with the same code evaluation uses, so training and evaluation
cannot drift apart, and a mixture file stays valid if the template code changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainExample:
    """One (query, positive, hard negatives) example from one source.

    ``in_batch_negatives`` is False for classification-derived examples: the paper contrasts the
    input only with its label and a misleading label, because another example's label may well be
    the correct label of this input (in-batch "negatives" would then be false negatives).
    """

    query: str                      # raw text, WITHOUT the instruction template
    positive: str
    negatives: tuple[str, ...]      # hard negatives (may be empty)
    instruction: str                # task string for the E5 template ("" = none); the trainer formats it
    source: str                     # source name, e.g. "msmarco-passage", "synthetic", "scifact"
    in_batch_negatives: bool = True # False for classification-derived examples (paper: label/misleading label only)

    def to_json(self) -> dict[str, Any]:
        """A plain dict (negatives as a list) for JSONL; the inverse of :meth:`from_json`."""
        return {
            "query": self.query,
            "positive": self.positive,
            "negatives": list(self.negatives),
            "instruction": self.instruction,
            "source": self.source,
            "in_batch_negatives": self.in_batch_negatives,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TrainExample":
        """Build from :meth:`to_json` output; callers validate field types first."""
        return cls(
            query=obj["query"],
            positive=obj["positive"],
            negatives=tuple(obj["negatives"]),
            instruction=obj["instruction"],
            source=obj["source"],
            in_batch_negatives=bool(obj["in_batch_negatives"]),
        )
