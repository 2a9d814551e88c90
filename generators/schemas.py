"""The JSON each prompt asks for, as pydantic models: the one definition of a valid output.

Parsing validates against these models, and constrained decoding (local backend, or an endpoint's
`json_schema` response format) is given the same schema, so what the grammar allows is exactly what
the parser accepts. Field names follow the paper's prompts.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BrainstormOutput(_Strict):
    """Step one of two-step prompting: a pool of task definitions."""

    tasks: list[Text]


class QueryDocExample(_Strict):
    """Short-long and short-short retrieval: a query and two documents."""

    user_query: Text
    positive_document: Text
    hard_negative_document: Text


class InputDocExample(_Strict):
    """Long-short and long-long retrieval: the query side is an input text."""

    input_text: Text
    positive_document: Text
    hard_negative_document: Text


class ClassificationExample(_Strict):
    """Classification recast as retrieval: the label plays the positive document."""

    input_text: Text
    label: Text
    misleading_label: Text


class TripleExample(_Strict):
    """STS and bitext: S1 with a close S2 and a less close S3."""

    S1: Text
    S2: Text
    S3: Text


def json_schema(
    model: type[BaseModel], max_chars: dict[str, int], max_items: int | None = None, min_chars: int = 1
) -> dict[str, Any]:
    """A compact JSON schema for `model` with length caps, for grammar-constrained decoding.

    Caps keep a small model's output inside its token budget (a truncated JSON is a wasted call); the
    parser does not enforce them, so a large API model's longer documents are still accepted.
    """
    props: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.annotation is not None and getattr(field.annotation, "__origin__", None) is list:
            item: dict[str, Any] = {"type": "string", "minLength": min_chars}
            if name in max_chars:
                item["maxLength"] = max_chars[name]
            arr: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
            if max_items is not None:
                arr["maxItems"] = max_items
            props[name] = arr
        else:
            prop: dict[str, Any] = {"type": "string", "minLength": min_chars}
            if name in max_chars:
                prop["maxLength"] = max_chars[name]
            props[name] = prop
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
