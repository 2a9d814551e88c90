"""The job's products: examples.jsonl (one training example per line) and manifest.json.

Both are written to a temporary name and renamed, examples first, so a directory holding a manifest
always holds the complete examples it describes; the manifest is the step's completion marker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from atomicio import atomic_write_text, atomic_write_with

EXAMPLES_FILE = "examples.jsonl"
MANIFEST_FILE = "manifest.json"


class ExampleRow(BaseModel):
    """One training example; retrieval reads query/positive/hard_negative, every row has task_type and language."""

    model_config = ConfigDict(extra="forbid")

    task_type: str
    instruction: str
    query: str
    positive: str
    hard_negative: str
    language: str
    target_language: str | None = None
    generator_model: str
    template_id: str
    template_version: int
    request_id: str
    placeholders: dict[str, str] = Field(default_factory=dict)


class TokenCounts(BaseModel):
    prompt: int = 0
    completion: int = 0
    total: int = 0


class RequestCounts(BaseModel):
    total: int = 0
    succeeded: int = 0
    from_store: int = 0
    new_calls: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    retries_used: int = 0


class GenerationManifest(BaseModel):
    """What a job made and what it cost; the harness reads `examples` and `counts`.

    `identity_sha256` hashes `identity` (`generators.identity.generation_identity`: what determines
    the examples); `config_path`, `output_dir` and `responses_path` are provenance only.
    """

    name: str
    config_path: str | None
    identity_sha256: str
    identity: dict[str, Any] = Field(default_factory=dict)
    backend: str
    generator_model: str
    seed: int
    output_dir: str
    examples_file: str = EXAMPLES_FILE
    responses_path: str
    started_at: str
    finished_at: str
    time_s: float
    requests: RequestCounts
    brainstorm: dict[str, int] = Field(default_factory=dict)
    kept: int = 0
    counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    rejects: dict[str, int] = Field(default_factory=dict)
    rejects_by_task_type: dict[str, dict[str, int]] = Field(default_factory=dict)
    rejects_by_field: dict[str, dict[str, int]] = Field(default_factory=dict)  # reason -> field -> count
    response_format: dict[str, str] = Field(default_factory=dict)  # mode and wire form the job used
    language_id: dict[str, int] = Field(default_factory=dict)
    contamination: dict[str, object] = Field(default_factory=dict)
    tokens: TokenCounts = Field(default_factory=TokenCounts)
    tokens_this_run: TokenCounts = Field(default_factory=TokenCounts)
    cost_usd: float = 0.0
    cost_usd_this_run: float = 0.0
    unpriced_models: list[str] = Field(default_factory=list)
    templates: dict[str, int] = Field(default_factory=dict)


def write_examples(out_dir: Path, rows: Iterable[ExampleRow]) -> Path:
    """Write the JSONL atomically; returns its path."""
    path = Path(out_dir) / EXAMPLES_FILE

    def write(fh: IO[str]) -> None:
        for row in rows:
            fh.write(json.dumps(row.model_dump(exclude_none=True), ensure_ascii=False) + "\n")

    atomic_write_with(path, write)
    return path


def write_manifest(out_dir: Path, manifest: GenerationManifest) -> Path:
    path = Path(out_dir) / MANIFEST_FILE
    atomic_write_text(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def read_examples(path: Path) -> list[ExampleRow]:
    """Load a written examples file back, validating each row."""
    with open(path, encoding="utf-8") as fh:
        return [ExampleRow.model_validate_json(line) for line in fh if line.strip()]
