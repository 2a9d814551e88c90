"""Which prompt goes in front of which text: the one place evaluation and training agree on it.

The E5-mistral recipe puts ``Instruct: {task}\\nQuery: {text}`` on queries only for retrieval-like
tasks (documents are embedded bare, so one document index serves every instruction) and on every
input for the other task types. Task strings default to mteb's ``TaskMetadata.prompt`` (through
mteb's own resolution, so a task without one gets mteb's per-type default), and a matrix may
override them per task. The template itself lives in ``trainers.templates`` (libraries never import
``harness``) and is imported here, so training and evaluation can never drift apart.

Overrides written in the matrix always apply, or the planner rejects them with the reason
(:func:`harness.pipeline.planner.check_instruction_overrides`): in ``e5`` mode they are task strings put into
the template; in ``model-prompts`` mode they replace the model's saved prompt verbatim (for
retrieval, a plain string or ``query:`` on queries, ``document:`` on documents).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from trainers.templates import E5_TEMPLATE, e5_prefix  # noqa: F401  (one template for training and evaluation)

RETRIEVAL_LIKE_TYPES = frozenset({"Retrieval", "Reranking", "InstructionRetrieval", "InstructionReranking"})

Mode = Literal["e5", "none", "model-prompts"]


def as_override(instr: Any) -> dict[str, str]:
    """A matrix instruction (a string, or ``{query, document}``) as the policy's per-side overrides."""
    if isinstance(instr, str):
        return {"all": instr}
    return {k: v for k, v in instr.model_dump().items() if v is not None}


def is_retrieval_like(task_type: str) -> bool:
    return task_type in RETRIEVAL_LIKE_TYPES


@dataclass(frozen=True)
class InstructionPolicy:
    """Resolves the exact prefix for (task, prompt type); the prefix is part of the cache key.

    ``mode``:
    - ``e5``: the E5 template with the task string (decoder embedders).
    - ``model-prompts``: the prompts saved in a sentence-transformers model's config, chosen the
      way mteb's own SentenceTransformer wrapper chooses them (so scores match mteb's).
    - ``none``: no prefix at all.
    """

    mode: Mode
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {query|document|all: str}
    model_prompts: dict[str, str] = field(default_factory=dict)

    def override(self, task_metadata: Any, prompt_type: Any) -> str | None:
        """The matrix's override for this side, if any.

        mteb encodes non-retrieval inputs with no prompt type: they take ``query:`` (the one
        instruction of a symmetric task) or the plain string. Retrieval documents take only an
        explicit ``document:`` (a plain string is the query instruction).
        """
        kind = getattr(prompt_type, "value", prompt_type)
        override = self.overrides.get(task_metadata.name, {})
        if kind in override:
            return override[kind]
        if kind == "document" and is_retrieval_like(task_metadata.type):
            return None
        if kind is None and "query" in override:
            return override["query"]
        return override.get("all")

    def task_string(self, task_metadata: Any, prompt_type: Any) -> str:
        """The task instruction: a matrix override, else ``TaskMetadata.prompt``, else mteb's default."""
        kind = getattr(prompt_type, "value", prompt_type)
        override = self.override(task_metadata, prompt_type)
        if override is not None:
            return override
        prompt = task_metadata.prompt
        if isinstance(prompt, dict):
            prompt = prompt.get(kind or "query") or prompt.get("query")
        if prompt:
            return str(prompt)
        from mteb.abstasks.abstask import get_abstask_prompt

        return str(get_abstask_prompt(task_metadata.name) or "")

    def prefix(self, task_metadata: Any, prompt_type: Any) -> str:
        kind = getattr(prompt_type, "value", prompt_type)
        if self.mode == "none":
            return ""
        if self.mode == "model-prompts":
            from mteb.models.abs_encoder import get_prompt_name

            override = self.override(task_metadata, prompt_type)
            if override is not None:
                return override

            name = get_prompt_name(self.model_prompts or None, task_metadata, prompt_type)
            return self.model_prompts.get(name, "") if name else ""
        if is_retrieval_like(task_metadata.type) and kind == "document":
            return ""
        return e5_prefix(self.task_string(task_metadata, prompt_type))
