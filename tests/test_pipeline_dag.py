"""The generate -> train -> evaluate DAG end to end, on a tiny quickstart-shaped matrix with real
components (tests/pipeline_fixtures.py): kill -9 in each kind of step and resume, exact step counts
after a changed setting, two runs on one folder, bad input that writes nothing, and ``harness plan``.

One uninterrupted run (module fixture) is the reference every other run is compared with. Step
directories are content-keyed, so a test that only needs an earlier step finished copies it from
the reference run instead of recomputing it: a copied step is a cached step, as in any run folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli, read_json
from tests.pipeline_fixtures import (BASE, GENERATED, MIXTURE, RECIPE, REPO, TASKS, TRAINED, assert_store_whole,
                                     finished_steps, harness, scores, status_counts, subprocess_env, texts_encoded,
                                     tiny_matrix, trained_weights, write_matrix)

N_EVAL = 2 * len(TASKS)


@dataclass
class Reference:
    run_dir: Path
    scores: dict[tuple[str, ...], float]
    run: dict[str, Any]

    def key(self, kind: str) -> str:
        (key,) = [s["key"] for s in self.run["steps"] if s["kind"] == kind]
        return key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    folder = tmp_path_factory.mktemp("reference")
    matrix = write_matrix(folder, tiny_matrix(), folder / "run")
    proc = subprocess.run(harness("run", matrix, "--no-progress"), cwd=REPO, capture_output=True, text=True,
                          env=subprocess_env(tmp_path_factory.getbasetemp()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = read_json(folder / "run" / "run.json")
    assert status_counts(run) == {("generate", "done"): 1, ("train", "done"): 1, ("evaluate", "done"): N_EVAL}
    (gen,) = [s for s in run["steps"] if s["kind"] == "generate"]
    assert gen["summary"]["kept"] >= RECIPE["batch_size"], "the generated set must fill one training batch"
    assert len(trained_weights(folder / "run")) == 1
    got = scores(folder / "run")
    assert {k[0] for k in got} == {BASE, TRAINED} and len(got) == 2 * (3 + 2)
    return Reference(folder / "run", got, run)


def _seed(run_dir: Path, reference: Reference, kinds: list[str]) -> None:
    """Copy the reference run's finished steps of these kinds into ``run_dir``."""
    for kind in kinds:
        for src in (reference.run_dir / "steps" / kind).iterdir():
            if not src.name.startswith("."):
                shutil.copytree(src, run_dir / "steps" / kind / src.name)


def _stored_calls(steps: Path) -> int:
    """Answers in the run-level LLM response cache (``<run>/cache/llm``), which every generate step shares."""
    from generators.response_cache import ResponseCache

    root = steps.parent / "cache" / "llm"
    return len(ResponseCache(root)) if root.is_dir() else 0


def _kill_point_reached(point: str, steps: Path) -> bool:
    if point == "generate":
        return _stored_calls(steps) > 0
    if point == "train":
        return any(steps.glob("train/.work-*/checkpoints/step-000001/complete.json"))
    return any(p.parent.name[0] != "." for p in steps.glob("evaluate/*/manifest.json"))


# --- 1. kill -9 in each kind of step, then re-run -----------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("point", ["generate", "train", "evaluate"])
def test_kill_9_in_a_step_then_rerun_resumes_and_matches_an_uninterrupted_run(
        reference: Reference, tmp_path: Path, point: str) -> None:
    run_dir, steps = tmp_path / "run", tmp_path / "run" / "steps"
    matrix = write_matrix(tmp_path, tiny_matrix(), run_dir)
    _seed(run_dir, reference, {"generate": [], "train": ["generate"], "evaluate": ["generate", "train"]}[point])
    env = subprocess_env()

    proc = subprocess.Popen(harness("run", matrix, "--no-progress"), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not _kill_point_reached(point, steps):
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before the kill point ({point}); nothing was tested"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    finished = finished_steps(run_dir)
    kinds_finished = [k for k, _ in finished]
    assert point == "evaluate" or point not in kinds_finished, f"the {point} step finished before the kill"
    assert kinds_finished.count("evaluate") < N_EVAL
    if point == "evaluate":
        assert kinds_finished.count("evaluate") >= 1
    else:  # what the re-run resumes from
        assert list(steps.glob(f"{point}/.work-*")), f"the killed {point} step left no work directory"
    assert_store_whole(run_dir, settled=False)  # a kill leaves no step directory without its manifest
    stored_at_kill = _stored_calls(steps)

    rerun = subprocess.run(harness("run", matrix, "--no-progress"), cwd=REPO, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert scores(run_dir) == reference.scores
    # bit for bit: a resumed training is the same model (the export is byte-deterministic)
    assert trained_weights(run_dir) == trained_weights(reference.run_dir)
    assert_store_whole(run_dir)
    assert finished_steps(run_dir) == finished_steps(reference.run_dir)

    run = read_json(run_dir / "run.json")
    for s in run["steps"]:
        expected = "cached" if (s["kind"], s["key"]) in finished else "done"
        assert s["status"] == expected, f"{s['label']}: {s['status']}, expected {expected}"
    redone = {k: sum(s["kind"] == k and s["status"] == "done" for s in run["steps"]) for k in ("generate", "train", "evaluate")}
    assert f"ran {redone['generate']} generate, {redone['train']} train, {redone['evaluate']} evaluate step(s)" in rerun.stdout
    if point == "generate":
        gen_manifest = read_json(steps / "generate" / reference.key("generate") / "output" / "manifest.json")
        assert gen_manifest["requests"]["from_store"] == stored_at_kill > 0, "stored calls must be answered from the store"
        assert gen_manifest["requests"]["new_calls"] == gen_manifest["requests"]["total"] - stored_at_kill
    if point == "train":
        (train,) = [s for s in run["steps"] if s["kind"] == "train"]
        assert train["summary"]["resumed_from"] >= 1, "training must resume from its checkpoint"


# --- 2. a changed setting re-runs exactly its dependents ----------------------------------------

@pytest.fixture
def one_torch_thread() -> Any:
    """In-process runs use one torch thread too (see ``subprocess_env``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run_counts(matrix: Path, run_dir: Path) -> tuple[dict[tuple[str, str], int], dict[str, Any]]:
    result = cli("run", str(matrix), "--no-progress")
    assert result.exit_code == 0, result.output
    run = read_json(run_dir / "run.json")
    return dict(status_counts(run)), run


@pytest.mark.slow
def test_a_changed_setting_reruns_exactly_its_dependents(reference: Reference, tmp_path: Path, one_torch_thread: None) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference.run_dir, run_dir)
    m = tiny_matrix()

    # (a) an evaluation setting of the base model: its evaluations only, vectors from the cache
    m["models"][0]["batch_size"] = 8
    counts, run = _run_counts(write_matrix(tmp_path, m, run_dir), run_dir)
    assert counts == {("generate", "cached"): 1, ("train", "cached"): 1, ("evaluate", "done"): 2, ("evaluate", "cached"): 2}
    assert {s["summary"]["model"] for s in run["steps"] if s["kind"] == "evaluate" and s["status"] == "done"} == {BASE}
    assert texts_encoded(run) == 0, "batch size does not change a vector"

    # (b) the mixture: training and the trained model's evaluations, not generation
    m["mixtures"][0]["sources"][0]["max_examples"] = RECIPE["batch_size"]
    counts, run = _run_counts(write_matrix(tmp_path, m, run_dir), run_dir)
    assert counts == {("generate", "cached"): 1, ("train", "done"): 1, ("evaluate", "done"): 2, ("evaluate", "cached"): 2}
    assert {s["summary"]["model"] for s in run["steps"] if s["kind"] == "evaluate" and s["status"] == "done"} == {TRAINED}
    assert run["encode_stats"][TRAINED]["texts_encoded"] > 0, "new weights, new vectors"
    retrained_rev = next(s["summary"]["revision"] for s in run["steps"] if s["kind"] == "evaluate" and s["status"] == "done")

    # (c) renaming the trained entry: its results re-filed under the new name, nothing encoded
    m["models"][1]["name"] = "minilm-renamed"
    counts, run = _run_counts(write_matrix(tmp_path, m, run_dir), run_dir)
    assert counts == {("generate", "cached"): 1, ("train", "cached"): 1, ("evaluate", "done"): 2, ("evaluate", "cached"): 2}
    assert texts_encoded(run) == 0 and run["encode_stats"]["minilm-renamed"]["texts_encoded"] == 0
    got = scores(run_dir)
    renamed = {k[1:]: v for k, v in got.items() if k[0] == "minilm-renamed"}
    assert renamed == {k[1:]: v for k, v in got.items() if k[0] == TRAINED and k[1] == retrained_rev}
    assert len(renamed) == 3 + 2 and {k[0] for k in renamed} == {retrained_rev}


# --- 3. two runs on one folder at once ------------------------------------------------------------

_RAN = re.compile(r"ran (\d+) generate, (\d+) train, (\d+) evaluate step\(s\)")


@pytest.mark.slow
def test_two_runs_on_one_folder_at_once_run_each_step_once(reference: Reference, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    matrix = write_matrix(tmp_path, tiny_matrix(), run_dir)
    env = subprocess_env()
    procs = [subprocess.Popen(harness("run", matrix, "--no-progress"), cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    ran = [tuple(map(int, _RAN.search(out).groups())) for out, _ in outs]  # type: ignore[union-attr]
    assert tuple(map(sum, zip(*ran))) == (1, 1, N_EVAL), f"each step must run exactly once: {ran}"
    train_lines = sorted(line.split()[0] for out, _ in outs for line in out.splitlines() if f"train {TRAINED}" in line)
    assert train_lines == ["cached", "done"], "one process trains, the other finds the step done"
    assert scores(run_dir) == reference.scores
    assert trained_weights(run_dir) == trained_weights(reference.run_dir)
    assert finished_steps(run_dir) == finished_steps(reference.run_dir)
    assert_store_whole(run_dir)
    again = cli("run", str(matrix), "--no-progress")
    assert again.exit_code == 0 and "ran 0 generate, 0 train, 0 evaluate step(s); 0 text(s) encoded" in again.output


# --- 4. bad input: exit 2, one error naming file, field and fix, nothing written ------------------

def _registry_typo(m: dict[str, Any]) -> None:
    m["mixtures"][0]["sources"] = [{"kind": "registry", "source": "msmarcoo"}]


def _missing_generate(m: dict[str, Any]) -> None:
    m["mixtures"][0]["sources"][0]["generate"] = "nope"


def _missing_base(m: dict[str, Any]) -> None:
    m["models"][1]["train"]["base"] = "./no-such-model"


def _cycle(m: dict[str, Any]) -> None:
    m["models"] = [{"name": "a", "train": {"base": "b", "mixture": MIXTURE}},
                   {"name": "b", "train": {"base": "a", "mixture": MIXTURE}}]


def _missing_mixture(m: dict[str, Any]) -> None:
    m["models"][1]["train"]["mixture"] = "nope"


def _recipe_typo(m: dict[str, Any]) -> None:
    recipe = m["models"][1]["train"]["recipe"]
    recipe["learning_rat"] = recipe.pop("learning_rate")


def _no_hard_negatives(m: dict[str, Any]) -> None:
    """ELI5's hub copy has no negatives column; the recipe's hard_negatives is the default 1."""
    m["mixtures"][0]["sources"].append({"kind": "registry", "source": "eli5"})


_M0 = f"mixtures[0] (name: {MIXTURE}).sources[0]"
_M1 = f"models[1] (name: {TRAINED}).train"


@pytest.mark.parametrize(("edit", "args", "field", "problem", "fix"), [
    (_registry_typo, (), f"{_M0}.source", "unknown training source 'msmarcoo'", "did you mean 'msmarco-"),
    (_missing_generate, (), f"{_M0}.generate", "names no generate entry ('nope')", f"use one of: {GENERATED}"),
    (_missing_base, (), f"{_M1}.base", "no-such-model does not exist", "fix the path"),
    (_cycle, (), "models[0] (name: a).train.base", "training cycle: a -> b -> a", "point one 'base:' at a pretrained model"),
    (_missing_mixture, (), f"{_M1}.mixture", "names no mixture ('nope')", f"use one of: {MIXTURE}"),
    (_recipe_typo, (), f"{_M1}.recipe.learning_rat", "unknown field", "rename it to 'learning_rate'"),
    (_no_hard_negatives, (), f"mixtures[0] (name: {MIXTURE}).sources[1].hard_negatives",
     (f"source 'eli5' has no hard negatives (no negatives column) and its batches would use 1 on every example (1 is "
      f"the hard_negatives of {_M1}.recipe, the trainer's default)"), "set hard_negatives: 0 on this source"),
    (None, ("--executor", "nope"), "--executor", "unknown executor 'nope'", "use one of: local, ray"),
    (None, ("--address", "127.0.0.1:6379"), "--address", "the executor is local", "add '--executor ray'"),
], ids=["registry-typo", "missing-generate", "missing-base", "cycle", "missing-mixture", "recipe-typo",
        "no-hard-negatives", "executor", "address-without-ray"])
def test_bad_input_is_one_error_and_writes_nothing(tmp_path: Path, edit: Any, args: tuple[str, ...], field: str,
                                                  problem: str, fix: str) -> None:
    m = tiny_matrix()
    if edit is not None:
        edit(m)
    matrix = write_matrix(tmp_path, m, tmp_path / "run")
    before = sorted(tmp_path.rglob("*"))
    result = cli("run", str(matrix), "--no-progress", *args)
    assert result.exit_code == 2, result.output
    out = result.output
    assert out.count("Fix:") == 1, out
    where = f"{matrix}: {field}: " if edit is not None else f"<input>: {field}: "
    assert where in out and problem in out, out
    assert fix in out.split("Fix:", 1)[1], out
    assert not (tmp_path / "run").exists() and sorted(tmp_path.rglob("*")) == before, "bad input must write nothing"


def test_validate_refuses_a_source_without_the_hard_negatives_its_batches_use(tmp_path: Path) -> None:
    """The trainer's hard-negative rule is checked when the matrix is planned, so ``harness validate``
    (and ``plan``) refuse it before any generate step is paid; a generated source is not checked (its
    data does not exist yet), and the source's own ``hard_negatives: 0`` is the fix."""
    m = tiny_matrix()
    _no_hard_negatives(m)
    matrix = write_matrix(tmp_path, m, tmp_path / "run")
    result = cli("validate", str(matrix))
    assert result.exit_code == 2, result.output
    assert result.output.count("Fix:") == 1 and result.output.count("eli5") == 1, result.output
    assert f"{matrix}: mixtures[0] (name: {MIXTURE}).sources[1].hard_negatives: source 'eli5'" in result.output
    m["mixtures"][0]["sources"][1]["hard_negatives"] = 0
    fixed = cli("validate", str(write_matrix(tmp_path, m, tmp_path / "run")))
    assert fixed.exit_code == 0, fixed.output


# --- a regression found by the kill test ----------------------------------------------------------

def test_local_generation_gives_torchs_thread_count_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local backend's ``threads:`` sets torch's process-wide thread count. It leaked into the
    train and evaluate steps after generation in one ``harness run``: they ran single-threaded, and
    the trained weights differed by whether generation had run in the same process or was cached."""
    import asyncio

    import torch
    import transformers

    from generators.backends.local_backend import LocalBackend
    from generators.config import LocalBackendConfig

    class Tok:
        chat_template, pad_token, eos_token, padding_side = "t", "<pad>", "</s>", "right"

    class Model:
        def eval(self) -> "Model":
            return self

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: Tok())
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: Model())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        backend = LocalBackend(LocalBackendConfig(kind="local", threads=1, constrained=False))
        backend._load()
        assert torch.get_num_threads() == 1
        asyncio.run(backend.aclose())
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# --- 5. harness plan before and after a run -------------------------------------------------------

@pytest.mark.slow
def test_plan_shows_each_step_to_run_then_cached_with_its_inputs(reference: Reference, tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, tiny_matrix(), tmp_path / "run")
    expected = [  # (label, after)
        (f"generate {GENERATED}", None),
        (f"train {TRAINED}", f"generate {GENERATED}"),
        *[(f"evaluate {BASE} × {t}", None) for t in TASKS],
        *[(f"evaluate {TRAINED} × {t}", f"train {TRAINED}") for t in TASKS],
    ]
    keys = {s["label"]: s["key"] for s in reference.run["steps"]}
    for output, status, summary in ((tmp_path / "run", "to run", "6 of 6 step(s) to run"),
                                    (reference.run_dir, "cached", "0 of 6 step(s) to run")):
        result = cli("plan", str(matrix), "--output", str(output))
        assert result.exit_code == 0, result.output
        rows = [line.strip() for line in result.output.splitlines() if line.strip().startswith("[")]
        lines = [row.split("  — ")[0] for row in rows]  # the estimated cost follows a dash, for steps to run
        want = [f"[{status}] {label} key={keys[label][:20]}" + (f" after {after}" if after else "") for label, after in expected]
        assert lines == want, result.output
        assert all(("cached: costs nothing" in row) == (status == "cached") for row in rows), result.output
        assert summary in result.output
    assert not (tmp_path / "run").exists(), "plan writes nothing"


# --- 6. the same DAG as Ray tasks on a real local Ray cluster --------------------------------------

@pytest.mark.slow
def test_ray_executor_runs_the_dag_as_tasks_with_the_local_executors_results(reference: Reference, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    matrix = write_matrix(tmp_path, tiny_matrix(), tmp_path / "run")
    env = {**subprocess_env(tmp_path), "RAY_AUTH_MODE": "disabled"}  # the run starts (and stops) its own local cluster
    proc = subprocess.run(harness("run", matrix, "--executor", "ray", "--no-progress"), cwd=REPO, capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = read_json(tmp_path / "run" / "run.json")
    assert run["executor"] == "ray"
    assert status_counts(run) == {("generate", "done"): 1, ("train", "done"): 1, ("evaluate", "done"): N_EVAL}
    tasks = run["ray_tasks"]  # generate, train, and one evaluate unit per model
    assert len(tasks) == 4 and all(t["pid"] != os.getpid() for t in tasks)
    assert scores(tmp_path / "run") == reference.scores
    assert trained_weights(tmp_path / "run") == trained_weights(reference.run_dir)
    assert_store_whole(tmp_path / "run")
