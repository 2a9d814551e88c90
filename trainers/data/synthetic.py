"""Synthetic examples written by ``generators/`` (examples.jsonl of ``ExampleRow``) as training examples.

The generator already stores each task type's three texts in query/positive/hard_negative (see
``generators.taxonomy.TASKS``), so the mapping here is the paper's reading of those roles:

- retrieval (short-long, long-short, short-short, long-long): query / positive document / hard
  negative document, with in-batch negatives;
- classification: input text / label / misleading label, and **no** in-batch negatives (another
  example's label may be this input's correct label);
- STS and bitext: S1 / S2 / S3 (S2 is closer to S1 than S3 is), with in-batch negatives.

The instruction is the row's own task definition (brainstormed for two-step types, the fixed
one-step strings for STS and bitext).
"""

from __future__ import annotations

from pathlib import Path

from generators.output import EXAMPLES_FILE, ExampleRow
from generators.taxonomy import TaskType
from trainers.data.jsonl import iter_jsonl, require_file, validate_row
from trainers.errors import TrainInputError
from trainers.examples import TrainExample

_ROW_FIX = "each line must be an ExampleRow as written by `generators` (generators/output.py); regenerate or repair this line"
_NO_IN_BATCH = frozenset({TaskType.CLASSIFICATION.value})


def resolve_examples_file(path: Path) -> Path:
    """Accept either a generator output directory (holding examples.jsonl) or the file itself."""
    if path.is_dir():
        path = path / EXAMPLES_FILE
    return require_file(
        path, "synthetic examples file",
        f"point `path` at a generator output directory (with {EXAMPLES_FILE}) or at the JSONL file itself",
    )


def load_synthetic(
    path: Path,
    *,
    source: str = "synthetic",
    instruction: str | None = None,
    max_examples: int | None = None,
) -> list[TrainExample]:
    """Load generator output; ``instruction`` (if given) replaces every row's own task string."""
    path = resolve_examples_file(Path(path))
    valid_types = {t.value for t in TaskType}
    out: list[TrainExample] = []
    for line, obj in iter_jsonl(path):
        if max_examples is not None and len(out) >= max_examples:
            break
        row: ExampleRow = validate_row(ExampleRow, obj, path, line, _ROW_FIX)
        if row.task_type not in valid_types:
            raise TrainInputError(
                path, "task_type", f"unknown task type {row.task_type!r}",
                f"use one of {sorted(valid_types)}", line=line,
            )
        for name in ("query", "positive", "hard_negative"):
            if not getattr(row, name).strip():
                raise TrainInputError(
                    path, name, "empty text",
                    "drop this line or regenerate it; every example needs a query, a positive and a hard negative",
                    line=line,
                )
        out.append(
            TrainExample(
                query=row.query,
                positive=row.positive,
                negatives=(row.hard_negative,),
                instruction=row.instruction if instruction is None else instruction,
                source=source,
                in_batch_negatives=row.task_type not in _NO_IN_BATCH,
            )
        )
    return out
