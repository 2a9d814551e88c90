"""Issue 17: a generation's identity holds what determines its examples and nothing else, and the
run-level response cache answers every request already paid for, whichever config or step asks.

Calls are counted where they are paid: at `generators.testing.fake_openai_server`, a fault-free test
double of an OpenAI-compatible endpoint (not a model: canned JSON per request) that logs every
request it answers with the client's X-Request-Key, reached over real HTTP by the real `openai`
client.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from generators.commands import generate
from generators.config import GenerationConfig, environment_variables, load_config
from generators.errors import GeneratorInputError
from generators.identity import generation_identity
from generators.planning import RequestPlanner
from generators.testing.fake_openai_server import FakeOpenAIServer

BASE: dict[str, Any] = {
    "name": "ident", "seed": 7,
    "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_ID_URL", "api_key_env": "GEN_ID_KEY"},
    "tasks": {"short-long": {"count": 4, "tasks_per_brainstorm": 3}, "sts": {"count": 4}, "bitext": {"count": 2}},
    "languages": {"en": 2, "fr": 1, "de": 1},
}

# Everything here is transport or bookkeeping: none of it changes an example.
TRANSPORT: dict[str, Any] = {
    "name": "other-name", "output": "elsewhere", "store": "some/cache",
    "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_ID_URL_2", "api_key_env": "GEN_ID_KEY_2",
                "base_url": "http://unused.invalid/v1", "concurrency": 2, "timeout_s": 7.5, "max_attempts": 2,
                "retry_budget": 5, "backoff_base_s": 0.01, "backoff_max_s": 0.02, "batch_poll_s": 3,
                "batch_discount": 0.3, "mode": "batch"},
    "prices": {"gpt-4o-mini": {"input_per_mtok": 9.0, "output_per_mtok": 9.0}},
    "failure": {"max_call_failure_share": 0.9},
}


def _write(folder: Path, data: dict[str, Any], name: str = "gen.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def _load(folder: Path, **changes: Any) -> GenerationConfig:
    return load_config(_write(folder, {**BASE, **changes}))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAIServer() as srv:
        for var in ("GEN_ID_URL", "GEN_ID_URL_2"):
            monkeypatch.setenv(var, srv.base_url)
        for var in ("GEN_ID_KEY", "GEN_ID_KEY_2"):
            monkeypatch.setenv(var, "sk-test")
        yield srv


# -- (a) transport fields: same identity, and the cache answers everything -------------------------
def test_transport_fields_keep_the_identity_and_a_rerun_pays_nothing(server: FakeOpenAIServer, tmp_path: Path) -> None:
    first = _load(tmp_path / "a")
    second = _load(tmp_path / "b", **TRANSPORT)
    second.backend.mode = "online"  # the same model answers both modes; online here so the double can answer
    assert generation_identity(first) == generation_identity(second)
    # the variables a worker must be given are named by the config, never by the identity
    assert environment_variables(second) == {"GEN_ID_URL_2", "GEN_ID_KEY_2"}
    assert not any(v in str(generation_identity(second)) for v in environment_variables(second))

    cache = tmp_path / "responses"
    m1 = generate(first, tmp_path / "out1", responses=cache, progress=False)
    paid = len(server.log)
    assert paid == m1.requests.total == m1.requests.new_calls > 0
    m2 = generate(second, tmp_path / "out2", responses=cache, progress=False)
    assert len(server.log) == paid  # not one request more
    assert m2.requests.new_calls == 0 and m2.requests.from_store == m1.requests.total
    assert (tmp_path / "out2" / "examples.jsonl").read_bytes() == (tmp_path / "out1" / "examples.jsonl").read_bytes()
    assert m1.identity_sha256 == m2.identity_sha256


# -- (b) a filter edit: another identity, and still no call paid again -------------------------------
def test_a_filter_edit_changes_the_identity_but_pays_nothing(server: FakeOpenAIServer, tmp_path: Path) -> None:
    cfg = _load(tmp_path / "a")
    cache = tmp_path / "responses"
    m1 = generate(cfg, tmp_path / "out1", responses=cache, progress=False)
    paid = len(server.log)
    for change in ({"dedup": False}, {"language_min_chars": 60}, {"language_id": False}):
        edited = _load(tmp_path / "b", filters=change)
        assert generation_identity(edited) != generation_identity(cfg), change
        m = generate(edited, tmp_path / "out2", responses=cache, progress=False)
        assert len(server.log) == paid and m.requests.new_calls == 0, change
        assert m.identity_sha256 != m1.identity_sha256


# -- (c) contamination sources by content --------------------------------------------------------------
def _eval_folder(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "The river flooded the valley after rain."}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "Why did the valley flood?"}\n')
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def test_contamination_sources_enter_by_content(tmp_path: Path) -> None:
    evalset = _eval_folder(tmp_path / "data" / "scifact")
    here = _load(tmp_path / "cfg", filters={"contamination": [str(evalset)]})
    moved = shutil.copytree(evalset, tmp_path / "elsewhere" / "copy-of-scifact")
    there = _load(tmp_path / "cfg2", filters={"contamination": ["../elsewhere/copy-of-scifact"]})
    assert here.filters.contamination != there.filters.contamination  # two paths ...
    assert generation_identity(here) == generation_identity(there)  # ... one identity
    (moved / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\n")  # not read by the filter
    assert generation_identity(there) == generation_identity(here)
    text = (moved / "corpus.jsonl").read_text()
    (moved / "corpus.jsonl").write_text(text.replace("rain.", "rain!"))  # one byte of an eval string
    assert generation_identity(there) != generation_identity(here)


# -- (d) model_env: the model it names, read once --------------------------------------------------------
def test_model_env_enters_as_the_model_it_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ident(var: str, value: str | None) -> dict[str, Any]:
        if value is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, value)
        backend = {"kind": "openai", "model_env": var}
        return generation_identity(_load(tmp_path / var, backend=backend))

    assert ident("GEN_ID_MODEL_A", "gpt-4o-mini") != ident("GEN_ID_MODEL_A", "gpt-4.1-mini")
    assert ident("GEN_ID_MODEL_A", "gpt-4o-mini") == ident("GEN_ID_MODEL_B", "gpt-4o-mini")
    with pytest.raises(GeneratorInputError) as err:
        ident("GEN_ID_MODEL_C", None)
    assert "field 'backend.model_env'" in str(err.value) and "export GEN_ID_MODEL_C=" in str(err.value)

    # Read once: a config loaded (planned) under one value keeps its model if the variable changes.
    monkeypatch.setenv("GEN_ID_MODEL_A", "gpt-4o-mini")
    cfg = _load(tmp_path / "pinned", backend={"kind": "openai", "model_env": "GEN_ID_MODEL_A"})
    before = generation_identity(cfg)
    monkeypatch.setenv("GEN_ID_MODEL_A", "gpt-4.1")
    assert generation_identity(cfg) == before and RequestPlanner(cfg).model == "gpt-4o-mini"


# -- (e) a local model by its bytes -------------------------------------------------------------------------
def _local_keys(model: Path) -> list[str]:
    cfg = GenerationConfig.model_validate({**BASE, "backend": {"kind": "local", "model": str(model)}})
    planner = RequestPlanner(cfg)
    keys = [r.key for _, r in planner.brainstorm_requests()]
    plans, _ = planner.examples({})
    return keys + [p.request.key for p in plans]


def test_local_model_requests_are_keyed_by_its_bytes(tmp_path: Path) -> None:
    """A tiny stand-in file is enough: keys are computed without loading the model."""
    a = tmp_path / "run-a" / "model.gguf"
    b = tmp_path / "run-b" / "model.gguf"
    for path, payload in ((a, b"GGUF weights A"), (b, b"GGUF weights B")):
        path.parent.mkdir(parents=True)
        path.write_bytes(payload)
    keys_a, keys_b = _local_keys(a), _local_keys(b)
    assert len(keys_a) == len(set(keys_a)) > 0
    assert not set(keys_a) & set(keys_b)  # same file name, other bytes: other requests
    moved = tmp_path / "archive" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.move(a, moved)
    assert _local_keys(moved) == keys_a  # same bytes elsewhere: the cached answers still apply
    cfg = GenerationConfig.model_validate({**BASE, "backend": {"kind": "local", "model": str(moved)}})
    assert generation_identity(cfg)["backend"]["model"] == RequestPlanner(cfg).model
    assert str(tmp_path) not in str(generation_identity(cfg))  # no path anywhere in the identity
