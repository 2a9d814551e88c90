"""Hugging Face datasets with a column mapping: ``load_dataset(name, config, split=...)`` + ``columns``.

Public training sets come in a few shapes, and the mapping covers them without per-dataset code:
a column may hold a string, a list of strings, a ``{"title", "text"}`` passage, or a list of those
(the Tevatron / MIRACL ``positive_passages`` shape); ``negatives`` may also name several columns
(``negative_1`` ... ``negative_8``). Passages are joined like BEIR/mteb documents. A positive column
holding several positives contributes its first one (one example per row, as the row was built).

The same code path reads a local ``json``/``parquet`` file (``dataset: json``, ``data_files: ...``),
which is how it is tested offline and how users train from a downloaded copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from trainers.data.beir import document_text
from trainers.errors import TrainInputError
from trainers.examples import TrainExample


class HubColumns(BaseModel):
    """Which dataset column plays which role."""

    model_config = ConfigDict(extra="forbid")

    query: str
    positive: str
    negatives: str | list[str] | None = None
    instruction: str | None = None


def pick_instruction(instructions: Sequence[str], query: str) -> str:
    """One of several instructions for a source, chosen by a stable hash of the query.

    The paper lists two instructions for NLI, MS MARCO and Quora "to avoid overfitting"; hashing
    the text (not a running counter) keeps the choice independent of loading order and subsets.
    """
    if len(instructions) == 1:
        return instructions[0]
    h = int.from_bytes(hashlib.sha256(query.encode("utf-8")).digest()[:8], "little")
    return instructions[h % len(instructions)]


def _texts(value: Any) -> list[str] | None:
    """A cell as a list of texts; None when the cell's shape is not one we understand."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        text = value.get("text")
        if not isinstance(text, str):
            return None
        title = value.get("title")
        return [document_text(title if isinstance(title, str) else None, text)]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for item in value:
            sub = _texts(item)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def load_hub(
    dataset: str,
    *,
    columns: HubColumns,
    config: str | None = None,
    split: str = "train",
    data_files: str | list[str] | None = None,
    revision: str | None = None,
    source: str,
    instruction: str | Sequence[str] | None = None,
    max_examples: int | None = None,
    where: str | None = None,
) -> list[TrainExample]:
    """Load and map one dataset split. ``where`` names the config entry in error messages."""
    import datasets  # lazy: only hub sources need it

    where = where or dataset
    kwargs: dict[str, Any] = {"split": split}
    if data_files is not None:
        kwargs["data_files"] = data_files
    if revision is not None:
        kwargs["revision"] = revision
    try:
        ds = datasets.load_dataset(dataset, config, **kwargs)
    except Exception as exc:  # network, unknown id/config/split, unreadable local file
        raise TrainInputError(
            where, "dataset", f"could not load {dataset!r} (config {config!r}, split {split!r}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            "check the dataset id, config and split (and network access / HF_HUB_OFFLINE), or point at a local copy",
        ) from exc
    have = list(ds.column_names)
    neg_cols = [columns.negatives] if isinstance(columns.negatives, str) else list(columns.negatives or [])
    for role, col in [("query", columns.query), ("positive", columns.positive), ("instruction", columns.instruction)] + [
        ("negatives", c) for c in neg_cols
    ]:
        if col is not None and col not in have:
            raise TrainInputError(where, f"columns.{role}", f"column {col!r} is not in the dataset (columns: {have})",
                                  f"map '{role}' to one of {have}")
    if max_examples is not None:
        ds = ds.select(range(min(max_examples, len(ds))))
    fixed: Sequence[str] | None = [instruction] if isinstance(instruction, str) else instruction
    out: list[TrainExample] = []
    for row_no, row in enumerate(ds, start=1):
        def cell(role: str, col: str) -> list[str]:
            texts = _texts(row[col])
            if texts is None:
                raise TrainInputError(where, f"columns.{role}",
                                      f"row {row_no}: column {col!r} holds {type(row[col]).__name__}, not text",
                                      "map the role to a column of strings, string lists or {title, text} passages")
            return texts

        queries = [t for t in cell("query", columns.query) if t.strip()]
        positives = [t for t in cell("positive", columns.positive) if t.strip()]
        if not queries or not positives:
            role = "query" if not queries else "positive"
            raise TrainInputError(where, f"columns.{role}", f"row {row_no}: empty {role}",
                                  "filter out rows without a query and a positive, or map another column")
        negatives = tuple(t for c in neg_cols for t in cell("negatives", c))
        if any(not t.strip() for t in negatives):
            raise TrainInputError(where, "columns.negatives", f"row {row_no}: a blank negative (only whitespace)",
                                  "filter out blank negatives (a missing value is fine: null or no list entry), "
                                  "or map another column")
        if fixed:
            instr = pick_instruction(fixed, queries[0])
        elif columns.instruction is not None:
            instr = str(row[columns.instruction] or "")
        else:
            instr = ""
        out.append(TrainExample(query=queries[0], positive=positives[0], negatives=negatives,
                                instruction=instr, source=source))
    return out
