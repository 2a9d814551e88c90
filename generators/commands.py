"""The entry point the CLI (`harness generate CONFIG [--output DIR]`) and the matrix call.

Returns the manifest it wrote, so a caller can read counts and cost without re-reading the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path

from generators.backends import make_backend
from generators.config import GenerationConfig, OpenAIBackendConfig, load_config
from generators.errors import BackendUnavailableError, GeneratorInputError
from generators.output import GenerationManifest, write_examples, write_manifest
from generators.pipeline import Job, JobResult
from generators.progress import Progress
from generators.response_store import ResponseStore


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_output(config_path: Path, cfg: GenerationConfig, output: Path | None) -> Path:
    """--output wins, then the config's `output:`, then runs/generate-<name> beside the config."""
    if output is not None:
        return Path(output).resolve()
    if cfg.output is not None:
        return cfg.output
    return config_path.resolve().parent / "runs" / f"generate-{cfg.name}"


async def _run(cfg: GenerationConfig, store: ResponseStore, progress: Progress) -> tuple[JobResult, str, str]:
    backend = make_backend(cfg.backend)
    journal = store.journal()
    if isinstance(cfg.backend, OpenAIBackendConfig):
        backend._journal = journal  # type: ignore[attr-defined]
    try:
        result = await Job(cfg, backend, store, progress).run()
    finally:
        await backend.aclose()
    return result, backend.name, backend.model_name  # type: ignore[attr-defined]


def generate(config_path: Path, output: Path | None = None, progress: bool = True) -> GenerationManifest:
    """Run (or resume) a generation job and write examples.jsonl + manifest.json under the output dir.

    Re-running the same config resumes: every call already in the response store is answered from it.
    Raises GeneratorInputError for a config the user must fix.
    """
    config_path = Path(config_path)
    cfg = load_config(config_path)
    out_dir = resolve_output(config_path, cfg, output)
    store_path = cfg.store or out_dir / "responses.sqlite"
    started, t0 = _now(), time.perf_counter()
    bar = Progress(total=0, enabled=progress, desc=f"generate {cfg.name}")
    try:
        with ResponseStore(store_path) as store:
            try:
                result, backend_name, model = asyncio.run(_run(cfg, store, bar))
            except BackendUnavailableError as exc:
                raise GeneratorInputError(config_path, "backend", str(exc), "install what it names or fix backend.model") from exc
    finally:
        bar.close()
    write_examples(out_dir, result.rows)
    counts: dict[str, dict[str, int]] = {"task_type": {}, "language": {}}
    for row in result.rows:
        counts["task_type"][row.task_type] = counts["task_type"].get(row.task_type, 0) + 1
        counts["language"][row.language] = counts["language"].get(row.language, 0) + 1
    manifest = GenerationManifest(
        name=cfg.name,
        config_path=str(config_path.resolve()),
        config_sha256=hashlib.sha256(config_path.read_bytes()).hexdigest(),
        backend=backend_name,
        generator_model=model,
        seed=cfg.seed,
        output_dir=str(out_dir),
        store_path=str(store_path),
        started_at=started,
        finished_at=_now(),
        time_s=round(time.perf_counter() - t0, 3),
        requests=result.requests,
        brainstorm=result.brainstorm,
        kept=len(result.rows),
        counts=counts,
        rejects=dict(result.rejects),
        rejects_by_task_type={k: dict(v) for k, v in result.rejects_by_type.items()},
        language_id=dict(result.language_id),
        contamination={
            "sources": [str(p) for p in cfg.filters.contamination],
            "eval_strings": result.contamination_strings,
        },
        tokens=result.tokens,
        tokens_this_run=result.tokens_this_run,
        cost_usd=round(result.cost_usd, 6),
        cost_usd_this_run=round(result.cost_usd_this_run, 6),
        unpriced_models=sorted(result.unpriced_models),
        templates=result.templates,
    )
    write_manifest(out_dir, manifest)
    return manifest
