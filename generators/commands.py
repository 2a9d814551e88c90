"""The entry points: `generate` (a validated config object; what the harness's generate step calls)
and `generate_file` (a config file; what `harness generate CONFIG [--output DIR]` calls).

`generate` takes the config OBJECT its caller keyed (and never re-reads a file, so what was planned
is what runs) and the response cache to read and write. Both return the manifest they wrote, so a
caller can read counts and cost without re-reading the file.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path

from generators.backends import make_backend
from generators.backends.openai_batch import RESPONSE_FORMS
from generators.batch_state import BATCH_STATE_FILE, BatchState
from generators.config import GenerationConfig, OpenAIBackendConfig, load_config
from generators.contamination import MIN_TOKENS, NGRAM, ContaminationFilter
from generators.errors import BackendUnavailableError, GenerationFailedError, GeneratorInputError
from generators.identity import generation_identity, identity_sha256
from generators.output import GenerationManifest, RequestCounts, write_examples, write_manifest
from generators.pipeline import Job, JobResult
from generators.planning import RequestPlanner
from generators.progress import Progress
from generators.response_cache import ResponseCache

RESPONSES_DIR = "responses"  # the CLI's default cache folder inside the output folder


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def resolve_output(config_path: Path, cfg: GenerationConfig, output: Path | None) -> Path:
    """--output wins, then the config's `output:`, then runs/generate-<name> beside the config."""
    if output is not None:
        return Path(output).resolve()
    if cfg.output is not None:
        return cfg.output
    return config_path.resolve().parent / "runs" / f"generate-{cfg.name}"


async def _run(cfg: GenerationConfig, planner: RequestPlanner, cache: ResponseCache, progress: Progress,
               contamination: ContaminationFilter | None, out_dir: Path) -> tuple[JobResult, str]:
    backend = make_backend(cfg.backend)
    if isinstance(cfg.backend, OpenAIBackendConfig):
        backend._journal = BatchState(out_dir / BATCH_STATE_FILE)  # type: ignore[attr-defined]
    try:
        result = await Job(cfg, backend, cache, progress, contamination, planner=planner).run()
    finally:
        await backend.aclose()
    return result, backend.name


def _response_format(cfg: GenerationConfig) -> dict[str, str]:
    if isinstance(cfg.backend, OpenAIBackendConfig):
        mode = cfg.backend.response_format
        return {"mode": mode, "wire_form": RESPONSE_FORMS[mode]}
    if getattr(cfg.backend, "constrained", False):
        return {"mode": "local_xgrammar", "wire_form": "JSON schema enforced in-process by xgrammar"}
    return {"mode": "none", "wire_form": "unconstrained local generation"}


def check_failures(counts: RequestCounts, max_share: float, config_path: Path | None = None) -> None:
    """Raise GenerationFailedError when every call failed or the failed share passes the bound."""
    if counts.total == 0 or counts.failed == 0:
        return
    share = counts.failed / counts.total
    if counts.failed < counts.total and share <= max_share:
        return
    top = sorted(counts.failed_by_reason.items(), key=lambda kv: -kv[1])[:2]
    reasons = "; ".join(f"{n}x {r}" for r, n in top) or "unknown"
    why = "all of them" if counts.failed == counts.total else f"{share:.0%} > failure.max_call_failure_share {max_share}"
    raise GenerationFailedError(
        config_path, "backend", f"generation failed: {counts.failed} of {counts.total} calls failed ({why}); top reasons: {reasons}",
        "fix what the reasons name (endpoint, model, key, backend.response_format) and re-run; no examples were"
        " written and the calls that succeeded stay in the response cache",
    )


def generate(cfg: GenerationConfig, output: Path, *, responses: Path, progress: bool = True,
             source: Path | None = None) -> GenerationManifest:
    """Run (or resume) a generation job: examples.jsonl + manifest.json under ``output``.

    ``cfg`` is the validated config (the object the caller's key was computed from); ``responses``
    is the response cache folder (shared, content-keyed: every request already answered there is
    not paid for again); ``source`` is the config file, for messages and provenance only.
    Raises GeneratorInputError for a config the user must fix.
    """
    out_dir = Path(output)
    responses = Path(responses)
    started, t0 = _now(), time.perf_counter()
    # Everything that reads the user's inputs runs before anything is written: a missing model
    # variable or a malformed eval line stops the job with nothing on disk.
    identity = generation_identity(cfg, source)
    planner = RequestPlanner(cfg, source)
    contamination = ContaminationFilter(cfg.filters.contamination) if cfg.filters.contamination else None
    bar = Progress(total=0, enabled=progress, desc=f"generate {cfg.name}")
    try:
        cache = ResponseCache(responses)
        try:
            result, backend_name = asyncio.run(_run(cfg, planner, cache, bar, contamination, out_dir))
        except BackendUnavailableError as exc:
            raise GeneratorInputError(source, "backend", str(exc), "install what it names or fix backend.model") from exc
    finally:
        bar.close()
    check_failures(result.requests, cfg.failure.max_call_failure_share, source)
    write_examples(out_dir, result.rows)
    counts: dict[str, dict[str, int]] = {"task_type": {}, "language": {}}
    for row in result.rows:
        counts["task_type"][row.task_type] = counts["task_type"].get(row.task_type, 0) + 1
        counts["language"][row.language] = counts["language"].get(row.language, 0) + 1
    manifest = GenerationManifest(
        name=cfg.name,
        config_path=str(Path(source).resolve()) if source is not None else None,
        identity_sha256=identity_sha256(identity),
        identity=identity,
        backend=backend_name,
        generator_model=planner.model,
        seed=cfg.seed,
        output_dir=str(out_dir),
        responses_path=str(responses),
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
        rejects_by_field={k: dict(v) for k, v in result.rejects_by_field.items()},
        contamination={
            "sources": [str(p) for p in cfg.filters.contamination],
            "eval_strings": result.contamination_strings,
            "indexed_for_near_copies": contamination.indexed if contamination is not None else 0,
            "method": f"exact (case/space-insensitive) + token {NGRAM}-gram containment >= "
                      f"{contamination.threshold if contamination is not None else 0} (eval strings of >= {MIN_TOKENS} tokens)",
            "rejects_by_reason": dict(result.contamination_reasons),
        },
        response_format=_response_format(cfg),
        tokens=result.tokens,
        tokens_this_run=result.tokens_this_run,
        cost_usd=round(result.cost_usd, 6),
        cost_usd_this_run=round(result.cost_usd_this_run, 6),
        unpriced_models=sorted(result.unpriced_models),
        templates=result.templates,
    )
    write_manifest(out_dir, manifest)
    return manifest


def generate_file(path: Path, output: Path | None = None, progress: bool = True) -> GenerationManifest:
    """`harness generate CONFIG [--output DIR]`: load the file, then `generate`.

    The cache is the config's `store:` if given, else ``<output>/responses``.
    """
    path = Path(path)
    cfg = load_config(path)
    out_dir = resolve_output(path, cfg, output)
    return generate(cfg, out_dir, responses=cfg.store or out_dir / RESPONSES_DIR, progress=progress, source=path)
