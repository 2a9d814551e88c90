"""Generation as a matrix step: planned, keyed by its config, cached, and run before evaluation.

The LLM endpoint is the generators' fault-free test double of an OpenAI-compatible server (no
LLM API is reachable here); the real ``openai`` client talks to it over loopback HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generators.output import read_examples
from generators.testing.fake_openai_server import FakeOpenAIServer
from tests.helpers import cli


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    srv = FakeOpenAIServer().start()
    monkeypatch.setenv("GEN_STEP_URL", srv.base_url)
    monkeypatch.setenv("GEN_STEP_KEY", "sk-step-test")
    yield srv
    srv.stop()


def test_generate_step_runs_once_then_is_cached(server, tmp_path: Path, smoke_copy: Path) -> None:
    gen = {
        "name": "tiny", "seed": 3,
        "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_STEP_URL", "api_key_env": "GEN_STEP_KEY"},
        "tasks": {"short-long": {"count": 4, "tasks_per_brainstorm": 2}, "sts": {"count": 3}},
        "languages": {"en": 1},
    }
    (tmp_path / "gen.yaml").write_text(yaml.safe_dump(gen))
    text = smoke_copy.read_text() + "generate:\n  - name: synthetic-tiny\n    config: gen.yaml\n"
    text = text.replace("  - name: HarnessSmokeSTS\n    data: smoke_data/sts\n", "", 1)
    smoke_copy.write_text(text)

    assert "[to run] generate synthetic-tiny" in cli("plan", str(smoke_copy)).output
    first = cli("run", str(smoke_copy), "--no-progress")
    assert first.exit_code == 0, first.output
    assert "done generate synthetic-tiny: kept" in first.output
    (examples,) = (tmp_path / "run" / "steps" / "generate").glob("*/output/examples.jsonl")
    rows = read_examples(examples)
    assert {r.task_type for r in rows} <= {"short-long", "sts"} and len(rows) >= 4
    calls = len(server.log)
    assert calls > 0

    second = cli("run", str(smoke_copy), "--no-progress")
    assert second.exit_code == 0
    assert "cached generate synthetic-tiny" in second.output
    assert len(server.log) == calls, "an unchanged generation config must not call the LLM again"


def test_bad_generation_config_is_bad_input(tmp_path: Path, smoke_copy: Path) -> None:
    (tmp_path / "gen.yaml").write_text("name: x\nbackend: {kind: nope}\n")
    smoke_copy.write_text(smoke_copy.read_text() + "generate:\n  - name: g\n    config: gen.yaml\n")
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "generate[0] (name: g).config" in result.output and "invalid generation config" in result.output
    assert not (tmp_path / "run").exists()
