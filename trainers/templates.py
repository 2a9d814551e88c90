"""The E5 instruction template: the one definition that training and evaluation share.

A model trained with ``Instruct: {task}\\nQuery: {text}`` and evaluated with a template that differs
by a single character loses points that no error reports, so this string exists exactly once.
``harness.evaluation.instructions`` (evaluation) imports it from here; ``trainers`` formats training queries
with it. Documents never get an instruction in the E5 recipe, so one document index serves every
task instruction.
"""

from __future__ import annotations

E5_TEMPLATE = "Instruct: {task}\nQuery: "


def e5_prefix(task_instruction: str) -> str:
    """The E5 query prefix for one task string (an empty task string means no prefix)."""
    task_instruction = task_instruction.strip()
    return E5_TEMPLATE.format(task=task_instruction) if task_instruction else ""


def format_query(task_instruction: str, text: str) -> str:
    """A query as the model sees it: the E5 prefix followed by the raw text."""
    return e5_prefix(task_instruction) + text
