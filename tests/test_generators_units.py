"""Unit behaviour of the generator's parts: templates, parsing, filters, store, pricing, batch files, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import require
import yaml

from generators.backends.base import CallOutcome, ChatRequest
from generators.backends.openai_backend import RetryBudget, parse_retry_after
from generators.backends.openai_batch import build_batch_lines, parse_batch_output
from generators.config import load_config
from generators.errors import GeneratorInputError
from generators.filters import ContaminationFilter, Deduper, LanguageChecker, normalize, squash
from generators.output import ExampleRow, read_examples, write_examples
from generators.parsing import INVALID_JSON, SCHEMA_INVALID, TRUNCATED, parse_output
from generators.pricing import Price, PriceTable
from generators.response_cache import ResponseCache
from generators.schemas import QueryDocExample, TripleExample, json_schema
from generators.taxonomy import TASKS, TaskType
from generators.templates import available_templates, load_template

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def _req(i: int = 0, **kw: object) -> ChatRequest:
    base = dict(model="gpt-4o-mini", messages=(("user", f"hello {i}"),), temperature=1.0, top_p=1.0,
                max_tokens=64, seed=i)
    base.update(kw)
    return ChatRequest(**base)  # type: ignore[arg-type]


# -- taxonomy and templates ----------------------------------------------------------------------
def test_seven_task_types_each_with_templates() -> None:
    assert {t.value for t in TaskType} == {
        "short-long", "long-short", "short-short", "long-long", "classification", "sts", "bitext"}
    ids = set(available_templates())
    for s in TASKS.values():
        for tset in ("paper", "compact"):
            assert f"{tset}/{s.generate_template}" in ids
            if s.two_step:
                assert f"{tset}/{s.brainstorm_template}" in ids
    assert not TASKS[TaskType.STS].two_step and not TASKS[TaskType.BITEXT].two_step


def test_paper_placeholder_sets_are_exact() -> None:
    t = load_template("paper/generate_short_long")
    assert t.placeholders["query_type"] == ("extremely long-tail", "long-tail", "common")
    assert t.placeholders["query_length"] == ("less than 5 words", "5 to 15 words", "at least 10 words")
    assert t.placeholders["difficulty"] == ("high school", "college", "PhD")
    assert t.placeholders["num_words"] == ("50", "100", "200", "300", "400", "500")
    sts = load_template("paper/generate_sts")
    assert sts.placeholders["high_score"] == ("4", "4.5", "5")
    assert sts.placeholders["low_score"] == ("2.5", "3", "3.5")
    assert t.version == 1


def test_render_refuses_undeclared_values() -> None:
    t = load_template("paper/generate_sts")
    good = {"unit": "sentence", "high_score": "4", "low_score": "3", "difficulty": "college", "language": "French"}
    msgs = t.render(good)
    assert "French" in msgs[-1]["content"] and "{" not in msgs[-1]["content"].replace('{"', "")
    with pytest.raises(ValueError, match="not in"):
        t.render({**good, "high_score": "4.2"})
    with pytest.raises(ValueError, match="missing"):
        t.render({k: v for k, v in good.items() if k != "language"})


# -- parsing -----------------------------------------------------------------------------------
def test_parse_valid_and_reasons() -> None:
    ok = json.dumps({"user_query": "q", "positive_document": "p", "hard_negative_document": "n"})
    assert parse_output(ok, QueryDocExample).value is not None
    assert parse_output("```json\n" + ok + "\n```", QueryDocExample).value is not None
    assert parse_output('{"user_query": "q", "posi', QueryDocExample).reason == INVALID_JSON
    assert parse_output('{"user_query": "q", "posi', QueryDocExample, "length").reason == TRUNCATED
    extra = json.dumps({"user_query": "q", "positive_document": "p", "hard_negative_document": "n", "x": 1})
    assert parse_output(extra, QueryDocExample).reason == SCHEMA_INVALID
    assert parse_output("[1, 2]", QueryDocExample).reason == SCHEMA_INVALID
    assert parse_output('{"S1": "a", "S2": "", "S3": "c"}', TripleExample).reason == SCHEMA_INVALID
    assert parse_output('{"S1": 1, "S2": "b", "S3": "c"}', TripleExample).reason == SCHEMA_INVALID


def test_parse_never_evaluates(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"{{'S1': __import__('pathlib').Path({str(marker)!r}).write_text('x'), 'S2': 'b', 'S3': 'c'}}"
    assert parse_output(payload, TripleExample).reason == INVALID_JSON
    assert not marker.exists()


def test_json_schema_caps_lengths() -> None:
    s = json_schema(QueryDocExample, {"user_query": 10})
    assert s["properties"]["user_query"]["maxLength"] == 10
    assert "maxLength" not in s["properties"]["positive_document"]
    assert s["additionalProperties"] is False and s["required"] == list(s["properties"])


# -- filters -----------------------------------------------------------------------------------
def test_dedup_after_normalization() -> None:
    d = Deduper()
    assert not d.is_duplicate("What is  DNA?", "A molecule.")
    assert d.is_duplicate("what is dna?", "A   MOLECULE.")
    assert not d.is_duplicate("what is dna?", "A different doc.")
    assert normalize("  A\tB ") == "a b" and squash("A b\nC") == "abc"


def test_contamination_filter_on_local_eval_data(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text(json.dumps({"_id": "1", "text": "Vitamin D lowers  risk"}) + "\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"sentence1": "A cat sits.", "sentence2": "x", "score": 1}) + "\n")
    f = ContaminationFilter([tmp_path])
    assert len(f) == 3
    assert f.is_contaminated("VITAMIN d lowers risk")
    assert f.is_contaminated("novel", "a  cat\nsits.")
    assert not f.is_contaminated("vitamin d lowers the risk")


def test_contamination_filter_on_scifact() -> None:
    require(SCIFACT.exists(), f"{SCIFACT} (shared/data/scifact)")
    f = ContaminationFilter([SCIFACT])
    assert len(f) > 5000
    assert f.is_contaminated("0-DIMENSIONAL biomaterials   lack inductive properties.")


def test_language_checker() -> None:
    lc = LanguageChecker(min_chars=10)
    assert lc.check("Le comité a examiné le budget annuel de la ville", "fr") == (True, "fr")
    ok, detected = lc.check("The committee reviewed the annual budget of the city", "de")
    assert ok is False and detected == "en"
    assert lc.check("short", "fr") == (None, None)
    assert lc.check("Yeh ek bahut accha din hai dosto", "hi_rom") == (None, None)


# -- store, pricing ----------------------------------------------------------------------------
def test_request_key_is_exact() -> None:
    a = _req(1)
    assert a.key == _req(1).key
    assert a.key != _req(1, temperature=0.5).key
    assert a.key != _req(1, seed=2).key
    assert a.key != _req(1, model="gpt-4o").key
    assert a.key != _req(1, messages=(("user", "hello 1 "),)).key
    assert a.key != _req(1, response_schema='{"type":"object"}').key
    assert a.key == _req(1, tag="other").key


def test_cache_roundtrip_first_writer_wins(tmp_path: Path) -> None:
    from generators.batch_state import BatchState

    root = tmp_path / "responses"
    entry, ours = ResponseCache(root).put(CallOutcome(_req(1), ok=True, text="{}", prompt_tokens=10, completion_tokens=5), 0.001)
    assert ours and entry.response == "{}"
    kept, ours = ResponseCache(root).put(CallOutcome(_req(1), ok=True, text="other"), 0.0)
    assert not ours and kept.response == "{}"  # the second writer is handed the first answer
    c = ResponseCache(root)
    hit = c.get(_req(1).key)
    assert hit is not None and hit.response == "{}" and hit.prompt_tokens == 10 and hit.cost_usd == 0.001
    assert c.get(_req(2).key) is None and len(c) == 1 and list(c.keys()) == [_req(1).key]
    stored = json.loads(c.path_of(_req(1).key).read_text())
    assert stored["request"] == _req(1).canonical() and stored["key"] == _req(1).key
    # a damaged entry reads as absent and is replaced by the next answer
    c.path_of(_req(1).key).write_text('{"key": "trunc')
    assert c.get(_req(1).key) is None
    assert c.put(CallOutcome(_req(1), ok=True, text="fresh"), None)[1] and c.get(_req(1).key).response == "fresh"
    # the batch job journal is a small state file, not part of the cache
    BatchState(tmp_path / "out" / "batch_jobs.json")["batch:x"] = "batch_1"
    assert BatchState(tmp_path / "out" / "batch_jobs.json")["batch:x"] == "batch_1"


def test_price_table() -> None:
    t = PriceTable()
    assert t.cost("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert t.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert t.cost("local:x.gguf", 10**6, 10**6) == 0.0
    assert t.cost("my-vllm-model", 10, 10) is None
    t2 = PriceTable({"my-vllm-model": Price(1.0, 2.0)})
    assert t2.cost("my-vllm-model", 10**6, 10**6, discount=0.5) == pytest.approx(1.5)


# -- OpenAI helpers ----------------------------------------------------------------------------
def test_retry_after_parsing_and_budget() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None
    b = RetryBudget(2)
    assert b.take() and b.take() and not b.take()


def test_batch_file_roundtrip() -> None:
    reqs = [_req(i, options=(("response_format", "json_object"),)) for i in range(3)]
    lines = build_batch_lines(reqs)
    first = json.loads(lines[0])
    assert first["custom_id"] == reqs[0].key and first["url"] == "/v1/chat/completions"
    assert first["body"]["response_format"] == {"type": "json_object"} and first["body"]["seed"] == 0
    out = [
        {"custom_id": reqs[0].key, "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": "{\"a\": 1}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3}}}},
        {"custom_id": reqs[1].key, "response": {"status_code": 500, "body": {}}, "error": None},
        "not json",
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in out)
    res = {o.request.key: o for o in parse_batch_output(text, {r.key: r for r in reqs})}
    assert res[reqs[0].key].ok and res[reqs[0].key].prompt_tokens == 7 and res[reqs[0].key].batch
    assert not res[reqs[1].key].ok and "500" in (res[reqs[1].key].error or "")
    assert not res[reqs[2].key].ok and "no result" in (res[reqs[2].key].error or "")


# -- config and output -------------------------------------------------------------------------
def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "gen.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {"backend": {"kind": "openai", "model": "gpt-4o-mini"}, "tasks": {"sts": {"count": 2}}}


def test_config_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    cfg = load_config(_write(tmp_path, {**BASE, "output": "out", "filters": {"contamination": ["eval"]}}))
    assert cfg.output == tmp_path / "out"
    assert cfg.filters.contamination == [tmp_path / "eval"]


@pytest.mark.parametrize(
    "patch, field, fix",
    [
        ({"backend": {"kind": "openai", "model": "m", "concurency": 3}}, "backend.concurency", "rename it to 'concurrency'"),
        ({"sampling": {"temprature": 0.5}}, "sampling.temprature", "rename it to 'temperature'"),
        ({"backend": {"kind": "openai"}}, "backend.model", "set backend.model or backend.model_env"),
        ({"backend": {"kind": "openai", "model_env": "GEN_UNIT_UNSET_MODEL"}}, "backend.model_env",
         "export GEN_UNIT_UNSET_MODEL=<model name>"),
        ({"backend": {"kind": "remote"}}, "backend", "'openai' or 'local'"),
        ({"tasks": {"retrieval": {"count": 1}}}, "tasks.retrieval", "allowed values"),
        ({"tasks": {"sts": {"count": 0}}}, "tasks", "count > 0"),
        ({"languages": {"klingon": 1.0}}, "languages", "as the message says"),
        ({"filters": {"contamination": ["missing-dir"]}}, "filters.contamination.0", "relative to this config"),
    ],
)
def test_config_errors_name_file_field_fix(tmp_path: Path, patch: dict, field: str, fix: str) -> None:
    path = _write(tmp_path, {**BASE, **patch})
    with pytest.raises(GeneratorInputError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert str(path) in msg and f"field '{field}'" in msg and "Fix:" in msg and fix in msg
    assert isinstance(ei.value, ValueError)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(GeneratorInputError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_examples_written_atomically(tmp_path: Path) -> None:
    row = ExampleRow(task_type="sts", instruction="i", query="q", positive="p", hard_negative="n", language="en",
                     generator_model="m", template_id="paper/generate_sts", template_version=1, request_id="k")
    path = write_examples(tmp_path, [row, row])
    assert read_examples(path) == [row, row]
    assert [p.name for p in tmp_path.iterdir()] == ["examples.jsonl"]
