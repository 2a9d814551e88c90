"""Issue #10 item 7: both OpenAI-compatible client paths against a real llama.cpp server.

`harness generate` (openai backend, schema-constrained JSON in llama.cpp's own form) and an
`openai:` model evaluation run against llama-cpp-python's server with the shipped SmolLM2 GGUF,
started by the tests on 127.0.0.1 (see tests/llama_server.py). Few requests with small max_tokens:
CPU generation is tens of tokens per second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import cli, main_scores
from tests.llama_server import llama_server, pooled_copy, posts, require_llama_cpp, smollm2_gguf

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-llama-test-SECRET-5c2d9e"


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    require_llama_cpp()
    log = tmp_path_factory.mktemp("llama") / "chat-server.log"
    with llama_server(smollm2_gguf(), log, "--n_ctx", "2048", "--chat_format", "chatml") as url:
        yield url, log


def _gen_config(tmp_path: Path, response_format: str) -> Path:
    data = {
        "name": "llamacpp", "seed": 5,
        "backend": {"kind": "openai", "model": "smollm2", "base_url_env": "LLAMA_TEST_URL",
                    "api_key_env": "LLAMA_TEST_KEY", "concurrency": 1, "timeout_s": 120, "max_attempts": 3,
                    "backoff_base_s": 0.05, "backoff_max_s": 0.1, "response_format": response_format},
        "tasks": {"short-short": {"count": 1, "brainstorm_calls": 1, "tasks_per_brainstorm": 2}, "sts": {"count": 2}},
        "languages": {"en": 1}, "templates": "compact",
        "sampling": {"temperature": 0.7, "top_p": 0.95, "max_tokens": 96},
        "lengths": {"short": 40, "long": 80, "task": 60},
        "filters": {"language_min_chars": 12},
        "output": "out", "store": "store/responses.sqlite",
    }
    p = tmp_path / "gen.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _generate(cfg: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLAMA_TEST_URL=url, LLAMA_TEST_KEY=SECRET)
    return subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "generate", str(cfg), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_generate_constrained_json_against_llama_cpp(chat_server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = chat_server
    r = _generate(_gen_config(tmp_path, "json_object_schema"), url)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["response_format"]["mode"] == "json_object_schema" and "llama-cpp-python" in m["response_format"]["wire_form"]
    assert m["requests"]["failed"] == 0 and m["requests"]["new_calls"] == m["requests"]["total"] == 4
    # the server enforced the schema: nothing was unparseable or off-schema
    assert not {"invalid_json", "schema_invalid"} & set(m["rejects"]), m["rejects"]
    assert m["kept"] >= 1 and "rejects_by_field" in m
    rows = [json.loads(x) for x in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == m["kept"]
    assert SECRET not in r.stderr and SECRET not in (tmp_path / "out" / "manifest.json").read_text()

    # the same job with another response-format mode is not served from the store (item 4)
    r2 = _generate(_gen_config(tmp_path, "json_object"), url)
    assert r2.returncode == 0, r2.stderr[-3000:]
    m2 = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m2["requests"]["from_store"] == 0 and m2["response_format"]["mode"] == "json_object"
    # ... while repeating the first one is (no call reaches the server)
    before = len(posts(log, "/v1/chat/completions"))
    r3 = _generate(_gen_config(tmp_path, "json_object_schema"), url)
    assert r3.returncode == 0 and len(posts(log, "/v1/chat/completions")) == before


def test_request_the_server_rejects_fails_once_with_its_message(chat_server: tuple[str, Path], tmp_path: Path) -> None:
    """llama-cpp-python rejects response_format.type json_schema with HTTP 500 and a validation message:
    not retried, the message kept, and the job exits non-zero with one line and nothing written."""
    url, log = chat_server
    before = len(posts(log, "/v1/chat/completions"))
    r = _generate(_gen_config(tmp_path, "json_schema"), url)
    sent = len(posts(log, "/v1/chat/completions")) - before
    assert r.returncode == 2, r.stderr[-3000:]
    assert sent == 3, "each request (1 brainstorm + 2 sts) is sent exactly once: an invalid request is not retried"
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert "3 of 3 calls failed" in errors[0] and "invalid request" in errors[0]
    assert "Input should be 'text' or 'json_object'" in errors[0]
    assert "json_object" in r.stderr  # the per-call log line carries the server's message too
    assert SECRET not in r.stderr
    assert not (tmp_path / "out").exists()


def _embed_matrix(smoke_copy: Path) -> Path:
    text = smoke_copy.read_text()
    head, _, tasks = text.partition("tasks:")
    models = ("name: llama-embed\nmodels:\n  - name: smollm2-llamacpp\n    model: openai:smollm2\n"
              "    base_url_env: LLAMA_EMB_URL\n    api_key_env: LLAMA_EMB_KEY\n    batch_size: 1024\n")
    smoke_copy.write_text(models + "tasks:" + tasks)
    return smoke_copy


def test_openai_embedder_against_llama_cpp(smoke_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_llama_cpp()
    matrix = _embed_matrix(smoke_copy)
    monkeypatch.setenv("LLAMA_EMB_KEY", SECRET)
    gguf = smollm2_gguf()

    # A GGUF without a pooling type: llama.cpp answers one vector per token. One short call, then the fix.
    log = tmp_path / "per-token.log"
    with llama_server(gguf, log, "--embedding", "true", "--n_ctx", "512") as url:
        monkeypatch.setenv("LLAMA_EMB_URL", url)
        result = cli("run", str(matrix), "--no-progress")
    logs = result.output + "".join(p.read_text() for p in (tmp_path / "run").rglob("*.log"))
    assert result.exit_code != 0
    assert "one vector per token" in logs and "enable pooling on the server" in logs
    # each of the 4 cells stops after its first call, a one-text probe: no 1,024-text chunk is ever sent
    assert len(posts(log, "/v1/embeddings")) == 4

    # The same model with pooling enabled (mean, set in the GGUF's metadata): the evaluation runs.
    pooled = pooled_copy(gguf, tmp_path / "smollm2-mean.gguf")
    log = tmp_path / "pooled.log"
    with llama_server(pooled, log, "--embedding", "true", "--n_ctx", "512") as url:
        monkeypatch.setenv("LLAMA_EMB_URL", url)
        result = cli("run", str(matrix), "--no-progress")
    assert result.exit_code == 0, result.output[-3000:]
    scores = main_scores(tmp_path / "run")
    assert len(scores) == 8 and all(0.0 <= v <= 1.0 for v in scores.values()), scores
