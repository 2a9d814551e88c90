"""Issue 17 (g): the generation estimate counts the calls the response cache already answers, exactly,
and the job then pays for exactly the rest (counted at the server).

The server is `generators.testing.fake_openai_server`, a fault-free test double of an OpenAI-compatible
endpoint (canned JSON, not a model) logging every request it answers; the real `openai` client
talks to it over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from generators.commands import generate
from generators.config import load_config
from generators.estimate import estimate_generation
from generators.testing.fake_openai_server import FakeOpenAIServer


def _cfg(folder: Path, tasks: dict[str, Any]):  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "gen.yaml"
    path.write_text(yaml.safe_dump({
        "name": "est", "seed": 13,
        "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_EST_URL", "api_key_env": "GEN_EST_KEY"},
        "tasks": tasks, "languages": {"en": 2, "fr": 1},
        "prices": {"gpt-4o-mini": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    }))
    return load_config(path)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    with FakeOpenAIServer() as srv:
        monkeypatch.setenv("GEN_EST_URL", srv.base_url)
        monkeypatch.setenv("GEN_EST_KEY", "sk-test")
        yield srv


def test_estimate_after_a_partial_run_counts_what_the_full_run_pays(server: FakeOpenAIServer, tmp_path: Path) -> None:
    small = _cfg(tmp_path / "small", {"short-long": {"count": 3, "brainstorm_calls": 2, "tasks_per_brainstorm": 4},
                                      "sts": {"count": 4}})
    full = _cfg(tmp_path / "full", {"short-long": {"count": 9, "brainstorm_calls": 2, "tasks_per_brainstorm": 4},
                                    "sts": {"count": 10},
                                    "long-long": {"count": 5, "brainstorm_calls": 1, "tasks_per_brainstorm": 4}})
    cache = tmp_path / "responses"

    before = estimate_generation(full, cache)  # no cache yet
    assert (before.calls, before.calls_cached, before.calls_to_pay) == (2 + 9 + 10 + 1 + 5, 0, 27)

    generate(small, tmp_path / "out-small", responses=cache, progress=False)
    partial = len(server.log)
    assert partial == 2 + 3 + 4

    est = estimate_generation(full, cache)
    # short-long: its 2 brainstorm answers are cached, so its pool is rebuilt and its first 3 examples
    # are found; sts needs no pool (first 4 found); long-long has no cached brainstorm (all to pay).
    assert est.calls_by_type["short-long"] == {"brainstorm": 2, "examples": 9, "cached": 5}
    assert est.calls_by_type["sts"] == {"brainstorm": 0, "examples": 10, "cached": 4}
    assert est.calls_by_type["long-long"] == {"brainstorm": 1, "examples": 5, "cached": 0}
    assert (est.calls, est.calls_cached, est.calls_to_pay) == (27, 9, 18)
    assert "long-long: 1 of 1 brainstorm answers not cached" in est.assumptions
    assert "9 cached, 18 to pay" in est.summary
    assert 0 < est.usd < before.usd and est.output_tokens_max < before.output_tokens_max

    m = generate(full, tmp_path / "out-full", responses=cache, progress=False)
    assert len(server.log) - partial == est.calls_to_pay == m.requests.new_calls
    assert m.requests.from_store == est.calls_cached

    after = estimate_generation(full, cache)
    assert (after.calls_cached, after.calls_to_pay, after.usd) == (27, 0, 0.0)
