"""Model output to a validated object: strict `json.loads` and a pydantic schema, never eval.

A reply either is exactly one JSON object that validates, or it is rejected with a reason that the
manifest counts; nothing is repaired or guessed (distilabel's eval() is what this replaces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from inputio import field_problem

INVALID_JSON = "invalid_json"
TRUNCATED = "truncated"
SCHEMA_INVALID = "schema_invalid"


@dataclass(frozen=True)
class Parsed:
    value: BaseModel | None
    reason: str | None
    detail: str = ""


def _strip_fence(text: str) -> str:
    """Remove one enclosing ```json fence, which chat models add even when told not to."""
    s = text.strip()
    if s.startswith("```") and s.endswith("```") and s.count("```") == 2:
        s = s[3:-3]
        if s.startswith("json"):
            s = s[4:]
    return s.strip()


def parse_output(text: str, schema: type[BaseModel], finish_reason: str | None = None) -> Parsed:
    """Parse one completion against its task's schema; the reason names why it was refused."""
    try:
        data = json.loads(_strip_fence(text))
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = TRUNCATED if finish_reason == "length" else INVALID_JSON
        return Parsed(None, reason, str(exc)[:200])
    if not isinstance(data, dict):
        return Parsed(None, SCHEMA_INVALID, f"top level is {type(data).__name__}, not an object")
    try:
        return Parsed(schema.model_validate(data), None)
    except ValidationError as exc:
        fp = field_problem(exc)
        return Parsed(None, SCHEMA_INVALID, (f"{fp.field}: {fp.problem}" if fp.field else fp.problem)[:200])
