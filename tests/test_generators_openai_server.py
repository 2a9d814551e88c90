"""The OpenAI backend against a local fault-injecting test double of an OpenAI-compatible server.

`generators.testing.fake_openai_server` is a test double, not a model: it serves canned JSON
completions and injects 429s with Retry-After, 500s, responses slower than the client timeout,
malformed HTTP bodies and non-JSON content, deterministically per request; the real `openai`
client talks to it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import yaml

from generators.commands import generate_file as generate
from generators.response_cache import ResponseCache
from generators.output import read_examples
from generators.testing.fake_openai_server import FakeOpenAIServer, FaultPlan

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-7f3a9c1e2b"


def _config(tmp_path: Path, counts: int = 12, concurrency: int = 8, **backend: object) -> Path:
    data = {
        "name": "fake",
        "seed": 11,
        "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "GEN_TEST_BASE_URL",
                    "api_key_env": "GEN_TEST_KEY", "concurrency": concurrency, "timeout_s": 1.0,
                    "max_attempts": 4, "backoff_base_s": 0.05, "backoff_max_s": 0.2, **backend},
        "tasks": {t: {"count": counts, "tasks_per_brainstorm": 5}
                  for t in ["short-long", "long-short", "short-short", "long-long", "classification"]}
        | {"sts": {"count": counts}, "bitext": {"count": counts}},
        "languages": {"en": 4, "fr": 2, "de": 2, "es": 2},
    }
    p = tmp_path / "gen.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


FAULTS = FaultPlan(dead=0.04, bad_content=0.04, rate_limited=0.12, server_error=0.1, timeout=0.05,
                   bad_body=0.05, retry_after_s=0.4, timeout_delay_s=2.0)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    srv = FakeOpenAIServer(FAULTS).start()
    monkeypatch.setenv("GEN_TEST_BASE_URL", srv.base_url)
    monkeypatch.setenv("GEN_TEST_KEY", SECRET)
    yield srv
    srv.stop()


def test_faults_every_request_succeeded_or_counted(server: FakeOpenAIServer, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    m = generate(_config(tmp_path), out, progress=True)
    log = server.log
    by_key: dict[str, list[str]] = defaultdict(list)
    for e in log:
        by_key[e.key].append(e.outcome)
    kinds = Counter(e.outcome for e in log)

    # every distinct request either succeeded or was counted failed
    assert m.requests.total == len(by_key) == m.requests.succeeded + m.requests.failed
    dead = {k for k, v in by_key.items() if set(v) == {"500"}}
    assert m.requests.failed == len(dead) > 0
    assert all(len(by_key[k]) == 4 for k in dead)  # max_attempts, then given up
    # each fault kind was injected and the request was retried to success
    for kind in ("429", "500", "timeout", "bad_body"):
        assert kinds[kind] > 0
    for k, v in by_key.items():
        if v[0] in ("429", "timeout", "bad_body") or (v[0] == "500" and k not in dead):
            assert v[-1] == "ok" and v.count("ok") == 1, v
    # no completed call was made twice; malformed content counted as a parse reject
    assert all(v.count("ok") + v.count("bad_content") <= 1 for v in by_key.values())
    assert m.rejects.get("invalid_json", 0) == sum(1 for v in by_key.values() if "bad_content" in v) > 0
    # Retry-After was honoured
    first_seen: dict[str, float] = {}
    for e in log:
        if e.outcome == "429":
            first_seen[e.key] = e.t
        elif e.key in first_seen and e.attempt == 2:
            assert e.t - first_seen[e.key] >= FAULTS.retry_after_s - 0.05
    # no duplicate rows
    rows = read_examples(out / "examples.jsonl")
    assert len({r.request_id for r in rows}) == len(rows) == m.kept > 0
    assert len({(r.query, r.positive) for r in rows}) == len(rows)
    assert m.cost_usd > 0 and m.tokens.total > 0 and m.requests.retries_used > 0

    # the key was sent to the server, and appears nowhere we write
    assert any(SECRET in h for h in server.state.auth_headers)
    written = [(out / "manifest.json").read_bytes(), (out / "examples.jsonl").read_bytes()]
    cached = [p for p in (out / "responses").rglob("*") if p.is_file()]
    entries = [p for p in cached if not p.name.startswith(".")]  # the rest: claims of the failed requests (empty)
    assert len(entries) == m.requests.succeeded  # one file per answered request
    assert len(cached) - len(entries) == m.requests.failed and all(p.stat().st_size == 0 for p in cached if p not in entries)
    written += [p.read_bytes() for p in cached]
    assert all(SECRET.encode() not in blob for blob in written)
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err + caplog.text
    assert "GEN_TEST_KEY" not in (out / "manifest.json").read_text()
    print(f"\nserver saw {dict(kinds)}; manifest requests {m.requests.model_dump()}; kept {m.kept}; rejects {m.rejects}")


_CHILD = """
import sys
from pathlib import Path
from generators.commands import generate_file as generate
from generators.response_cache import ResponseCache
generate(Path(sys.argv[1]), Path(sys.argv[2]), progress=False)
"""


def test_kill_9_then_rerun_repeats_no_completed_call(server: FakeOpenAIServer, tmp_path: Path) -> None:
    """Issue 17 (f): a job killed with SIGKILL mid-way, re-run against the same cache, pays at the
    server only for the calls that had not completed, and leaves no temporary file behind."""
    cfg = _config(tmp_path, counts=20)
    out = tmp_path / "out"
    cache = out / "responses"
    hold_at = 60
    server.hold_after(hold_at)  # completions after the 60th hang until released
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(cfg), str(out)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline:
        held = sum(1 for e in server.log if e.outcome == "held")
        if held > 0:
            stored = len(ResponseCache(cache))
            if stored >= hold_at:
                break
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        time.sleep(0.05)
    assert stored >= hold_at, f"only {stored} calls stored before the deadline"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists()

    completed_before = {e.key for e in server.log if e.outcome in ("ok", "bad_content")}
    stored_keys = set(ResponseCache(cache).keys())
    assert completed_before == stored_keys  # every completed call had been stored when killed

    server.set_phase("2")
    server.release()
    m = generate(cfg, out, progress=False)
    phase2 = [e for e in server.log if e.phase == "2"]
    repeated = {e.key for e in phase2} & completed_before
    print(f"\nkilled after {len(completed_before)} completed calls; re-run sent {len(phase2)} requests "
          f"({len({e.key for e in phase2})} distinct), repeated completed calls: {len(repeated)}; "
          f"from store {m.requests.from_store}, new {m.requests.new_calls}, failed {m.requests.failed}")
    assert repeated == set()
    assert m.requests.from_store == len(completed_before)
    assert m.requests.new_calls == m.requests.succeeded - len(completed_before)
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".damaged-" in p.name] == []
    assert m.requests.total == m.requests.succeeded + m.requests.failed
    rows = read_examples(out / "examples.jsonl")
    assert len({r.request_id for r in rows}) == len(rows) == m.kept


def test_retry_budget_is_finite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every call fails (500 forever): the budget ends the retries, and a job whose calls all failed
    is an error with the server's message, not a 0-example success (issue #10)."""
    import re

    from generators.errors import GenerationFailedError

    with FakeOpenAIServer(FaultPlan(dead=1.0)) as srv:
        monkeypatch.setenv("GEN_TEST_BASE_URL", srv.base_url)
        monkeypatch.setenv("GEN_TEST_KEY", SECRET)
        cfg = _config(tmp_path, counts=2, retry_budget=3, max_attempts=50)
        t0 = time.perf_counter()
        with pytest.raises(GenerationFailedError) as err:
            generate(cfg, tmp_path / "out", progress=False)
        assert time.perf_counter() - t0 < 30
        found = re.search(r"(\d+) of (\d+) calls failed \(all of them\)", str(err.value))
        assert found and found.group(1) == found.group(2)
        assert len(srv.log) == int(found.group(2)) + 3  # one try each plus the 3 budgeted retries
        assert "HTTP 500: internal error" in str(err.value) and SECRET not in str(err.value)
        assert not (tmp_path / "out" / "examples.jsonl").exists()
