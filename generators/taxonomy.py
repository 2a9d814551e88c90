"""The seven task types of the paper and what each needs: prompts, schema, field roles, languages.

Everything else (sampling, parsing, filtering, output) looks a task type up here, so adding a type
is one entry plus its template files.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel

from generators.schemas import (
    ClassificationExample,
    InputDocExample,
    QueryDocExample,
    TripleExample,
)


class TaskType(str, Enum):
    SHORT_LONG = "short-long"
    LONG_SHORT = "long-short"
    SHORT_SHORT = "short-short"
    LONG_LONG = "long-long"
    CLASSIFICATION = "classification"
    STS = "sts"
    BITEXT = "bitext"


@dataclass(frozen=True)
class TaskSpec:
    """How one task type is prompted and how its output maps onto a training example.

    `field_lengths` says which output fields are short (queries, labels) or long (documents) so one
    length setting per class caps all of them in constrained decoding.
    """

    task_type: TaskType
    two_step: bool
    schema: type[BaseModel]
    query_field: str
    positive_field: str
    negative_field: str
    field_lengths: dict[str, str]
    brainstorm_template: str | None
    generate_template: str
    bilingual: bool = False

    @property
    def category(self) -> str:
        """The family the paper groups this type under (retrieval, classification, sts, bitext)."""
        if self.task_type in RETRIEVAL_TYPES:
            return "retrieval"
        return self.task_type.value


RETRIEVAL_TYPES = frozenset(
    {TaskType.SHORT_LONG, TaskType.LONG_SHORT, TaskType.SHORT_SHORT, TaskType.LONG_LONG}
)

_QD = {"user_query": "short", "positive_document": "long", "hard_negative_document": "long"}
_ID = {"input_text": "long", "positive_document": "long", "hard_negative_document": "long"}

TASKS: dict[TaskType, TaskSpec] = {
    TaskType.SHORT_LONG: TaskSpec(
        TaskType.SHORT_LONG, True, QueryDocExample, "user_query", "positive_document",
        "hard_negative_document", _QD, "brainstorm_short_long", "generate_short_long",
    ),
    TaskType.LONG_SHORT: TaskSpec(
        TaskType.LONG_SHORT, True, InputDocExample, "input_text", "positive_document",
        "hard_negative_document",
        {"input_text": "long", "positive_document": "short", "hard_negative_document": "short"},
        "brainstorm_long_short", "generate_long_short",
    ),
    TaskType.SHORT_SHORT: TaskSpec(
        TaskType.SHORT_SHORT, True, QueryDocExample, "user_query", "positive_document",
        "hard_negative_document",
        {"user_query": "short", "positive_document": "short", "hard_negative_document": "short"},
        "brainstorm_short_short", "generate_short_short",
    ),
    TaskType.LONG_LONG: TaskSpec(
        TaskType.LONG_LONG, True, InputDocExample, "input_text", "positive_document",
        "hard_negative_document", _ID, "brainstorm_long_long", "generate_long_long",
    ),
    TaskType.CLASSIFICATION: TaskSpec(
        TaskType.CLASSIFICATION, True, ClassificationExample, "input_text", "label",
        "misleading_label",
        {"input_text": "long", "label": "short", "misleading_label": "short"},
        "brainstorm_classification", "generate_classification",
    ),
    TaskType.STS: TaskSpec(
        TaskType.STS, False, TripleExample, "S1", "S2", "S3",
        {"S1": "short", "S2": "short", "S3": "short"}, None, "generate_sts",
    ),
    TaskType.BITEXT: TaskSpec(
        TaskType.BITEXT, False, TripleExample, "S1", "S2", "S3",
        {"S1": "short", "S2": "short", "S3": "short"}, None, "generate_bitext", bilingual=True,
    ),
}


def spec(task_type: TaskType | str) -> TaskSpec:
    """Look a task type up by enum or by its config spelling ('short-long', 'sts', ...)."""
    return TASKS[TaskType(task_type)]
