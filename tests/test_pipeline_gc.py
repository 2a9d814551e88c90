"""``harness gc``: what the matrix as it is now no longer needs is listed, then removed on request;
what it needs (finished steps, resumable work directories) and what another process holds are kept."""

from __future__ import annotations

from pathlib import Path

from harness.steps.store import ArtifactStore, StepClaim
from tests.helpers import cli, main_scores

DROPPED = ("HarnessSmokeClassification", "HarnessSmokeBitextMining")


def _finished(run: Path, kind: str) -> set[str]:
    folder = run / "steps" / kind
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def test_gc_lists_then_removes_only_what_the_matrix_no_longer_needs(smoke_copy: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = cli("run", str(smoke_copy), "--no-progress")
    assert first.exit_code == 0, first.output
    before = main_scores(run)
    all_eval = _finished(run, "evaluate")
    assert len(all_eval) == 4

    clean = cli("gc", str(smoke_copy))
    assert clean.exit_code == 0 and "0 entries not needed" in clean.output

    # Edit the matrix: two tasks go. Their finished evaluate steps are no longer needed.
    text = smoke_copy.read_text()
    for task in DROPPED:
        start = text.index(f"  - name: {task}")
        end = text.index("\n", text.index("data:", start)) + 1
        text = text[:start] + text[end:]
    smoke_copy.write_text(text)
    kept_plan = cli("plan", str(smoke_copy))
    assert "0 of 2 step(s) to run" in kept_plan.output, kept_plan.output
    # A train step killed before a model entry was removed from the matrix leaves its checkpoints.
    orphan = run / "steps" / "train" / f".work-{'ab' * 32}" / "checkpoints" / "step-000001"
    orphan.mkdir(parents=True)
    (orphan / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    dropped = sorted(k for k in all_eval
                     if any(t in (run / "steps" / "evaluate" / k / "manifest.json").read_text() for t in DROPPED))
    assert len(dropped) == 2
    # Another process is working on one of them right now: it must be left alone.
    held = StepClaim(run / "steps" / "evaluate" / f".{dropped[0]}.lock")
    assert held.acquire(block=False)
    try:
        listing = cli("gc", str(smoke_copy))
        assert listing.exit_code == 0, listing.output
        assert "2 entries not needed by smoke.yaml" in listing.output and "--delete" in listing.output
        assert "unfinished train" in listing.output and "finished evaluate" in listing.output
        assert f"in use, kept: {run / 'steps' / 'evaluate' / dropped[0]}" in listing.output
        assert _finished(run, "evaluate") == all_eval and orphan.exists()  # a listing removes nothing

        removed = cli("gc", str(smoke_copy), "--delete")
        assert removed.exit_code == 0, removed.output
        assert "removed 2 entries" in removed.output
        assert _finished(run, "evaluate") == all_eval - {dropped[1]}
        assert not orphan.parents[1].exists()
    finally:
        held.release()

    # What the matrix needs is still done: a re-run does nothing and scores are unchanged.
    again = cli("run", str(smoke_copy), "--no-progress")
    assert again.exit_code == 0 and "ran 0 generate, 0 train, 0 evaluate step(s); 0 text(s) encoded" in again.output
    after = main_scores(run)
    assert after == before  # published results (the dropped tasks' too) are the run's output: gc never touches them
    final = cli("gc", str(smoke_copy), "--delete")
    assert "removed 1 entry" in final.output
    assert _finished(run, "evaluate") == all_eval - set(dropped)
    assert "0 entries not needed" in cli("gc", str(smoke_copy)).output
    assert not any(p.name.startswith(".gc-") for p in (run / "steps" / "evaluate").iterdir())
    assert ArtifactStore(run).is_done("evaluate", sorted(all_eval - set(dropped))[0])


def test_gc_keeps_a_step_a_running_step_reads_and_deletes_it_once_the_reader_is_done(tmp_path: Path) -> None:
    """The real gc path (``find_garbage``, then ``delete``) beside a reader holding ``store.reading``
    on a finished step no plan names any more (as a running train step holds its generated input):
    listed in use and kept, also when the reader arrives between listing and deleting; removed once
    the reader is done."""
    from harness.pipeline.gc import delete, find_garbage

    store = ArtifactStore(tmp_path / "run")
    key = "cd" * 32
    work = store.work_dir("generate", key)
    work.mkdir(parents=True)
    (work / "examples.jsonl").write_text("{}\n")
    store.commit("generate", key, label="generate old", code_version="t", params={}, inputs={}, summary={}, seconds=0)
    step_dir = store.step_dir("generate", key)
    nothing_needed: dict[str, set[str]] = {}  # the matrix no longer names the step

    with store.reading([("generate", key)]):
        garbage, busy = find_garbage(store, nothing_needed)
        assert garbage == [] and busy == [step_dir]
    garbage, busy = find_garbage(store, nothing_needed)
    assert [g.path for g in garbage] == [step_dir] and busy == [] and garbage[0].label == "generate old"
    with store.reading([("generate", key)]):  # a reader starts after the listing, before the deletion
        assert delete(store, garbage) == 0
        assert store.is_done("generate", key)
    assert delete(store, garbage) == garbage[0].size > 0
    assert not step_dir.exists() and not store.is_done("generate", key)
