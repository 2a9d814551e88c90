"""Issue #10 items 3 and 4: a request's store key covers everything that changes its answer, and the
local backend's answer to a request depends on that request alone (not on its batch mates)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generators.backends.base import ChatRequest
from generators.backends.local_backend import LocalBackend
from generators.backends.openai_batch import RESPONSE_FORMS, chat_body
from generators.config import GenerationConfig
from generators.identity import request_options
from generators.planning import RequestPlanner


def _cfg(backend: dict) -> GenerationConfig:
    return GenerationConfig.model_validate({
        "seed": 3, "backend": backend, "languages": {"en": 1, "fr": 1},
        "tasks": {"short-long": {"count": 3}, "sts": {"count": 2}},
    })


def _keys(backend_cfg: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Cache keys of the step-two requests a job plans (one brainstorm task pool stubbed in)."""
    from generators.taxonomy import TaskType

    plans, _ = RequestPlanner(_cfg(backend_cfg)).examples({TaskType.SHORT_LONG: ["Retrieve papers for a claim."]})
    return [p.request.key for p in plans]


LOCAL = {"kind": "local"}
OPENAI = {"kind": "openai", "model": "m"}


@pytest.mark.parametrize("change", [
    {"repetition_penalty": 1.3},
    {"constrained": False},
])
def test_local_options_are_in_the_key(change: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = _keys(LOCAL, tmp_path, monkeypatch)
    changed = _keys(LOCAL | change, tmp_path, monkeypatch)
    assert len(set(base)) == len(base) and not set(base) & set(changed)


def test_every_response_format_has_its_own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {m: tuple(_keys(OPENAI | {"response_format": m}, tmp_path, monkeypatch)) for m in RESPONSE_FORMS}
    assert len(set(keys.values())) == len(RESPONSE_FORMS)
    # batch size and concurrency do not change an answer: same keys
    assert tuple(_keys(OPENAI | {"response_format": "json_schema", "concurrency": 3}, tmp_path, monkeypatch)) == keys["json_schema"]


def test_body_sent_is_a_function_of_the_key() -> None:
    """Whatever the body holds comes from the request's canonical content (so from its key)."""
    schema = json.dumps({"type": "object", "properties": {"q": {"type": "string"}}})
    bodies = {}
    for mode in RESPONSE_FORMS:
        req = ChatRequest(model="m", messages=(("user", "hi"),), temperature=0.5, top_p=0.9, max_tokens=9,
                          seed=4, response_schema=schema, options=(("response_format", mode),))
        body = chat_body(req)
        canon = req.canonical()
        assert canon["options"]["response_format"] == mode
        for k in ("model", "seed"):
            assert body[k] == canon[k]
        assert body["messages"] == canon["messages"]
        assert {k: body[k] for k in canon["params"]} == canon["params"]
        bodies[mode] = body
    assert "response_format" not in bodies["none"]
    assert bodies["json_object"]["response_format"] == {"type": "json_object"}
    assert bodies["json_schema"]["response_format"]["type"] == "json_schema"
    assert bodies["json_object_schema"]["response_format"] == {"type": "json_object", "schema": json.loads(schema)}
    assert bodies["guided_json"]["guided_json"] == json.loads(schema)


def test_backends_options_are_in_every_request() -> None:
    cfg = _cfg(OPENAI | {"response_format": "json_object_schema"})
    assert request_options(cfg.backend) == {"response_format": "json_object_schema"}
    opts = request_options(_cfg(LOCAL).backend)
    assert opts["repetition_penalty"] == 1.1 and opts["constrained"] is True and "sampler" in opts
    (_, req), *_ = RequestPlanner(_cfg(LOCAL)).brainstorm_requests()
    assert dict(req.options) == opts


@pytest.mark.slow
def test_local_output_does_not_depend_on_batch_grouping() -> None:
    """The same six requests, batched two different ways (as a resumed run would), give identical text."""
    pytest.importorskip("xgrammar")
    cfg = _cfg(LOCAL | {"batch_size": 4, "threads": 1}).backend
    backend = LocalBackend(cfg)  # type: ignore[arg-type]
    schema = json.dumps({"type": "object", "properties": {"q": {"type": "string", "maxLength": 40}}, "required": ["q"]})
    reqs = [ChatRequest(model="m", messages=(("user", f"Write a JSON question about topic {i}" + " and more" * i),),
                        temperature=0.8, top_p=0.95, max_tokens=20, seed=100 + i, response_schema=schema)
            for i in range(6)]
    first = {o.request.key: o.text for b in (reqs[:4], reqs[4:]) for o in backend._generate_batch(b)}
    second = {o.request.key: o.text for b in (reqs[1:3], [reqs[0], reqs[5], reqs[3], reqs[4]])
              for o in backend._generate_batch(b)}
    assert first == second
    assert len(set(first.values())) == len(reqs)  # sampled, not one canned answer
