"""OpenAI-compatible embedding endpoints through the real ``openai`` client over HTTP.

The server here is a test double (there is no embedding API on these machines): a loopback HTTP
server that answers ``POST /v1/embeddings`` with deterministic hashed bag-of-words vectors and
can inject one 429 with Retry-After. What is under test is our side: the real client, batching,
order restoration, retries, the cache, and that the API key never reaches results.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cli, main_scores

DIM = 64
SECRET = "sk-test-never-write-me-0123456789"


def _vector(text: str) -> list[float]:
    v = np.zeros(DIM)
    for word in text.lower().split():
        h = int(hashlib.md5(word.strip(".,?!").encode()).hexdigest(), 16)
        v[h % DIM] += 1.0
    return v.tolist()


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-embeddings/1"
    log: list[dict] = []
    fail_next_with_429 = 0

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        entry = {"path": self.path, "n": len(body["input"]), "input": body["input"],
                 "auth": self.headers.get("Authorization"), "status": 200}
        type(self).log.append(entry)
        if type(self).fail_next_with_429:
            type(self).fail_next_with_429 -= 1
            entry["status"] = 429
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "rate limited"}}')
            return
        data = [{"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(body["input"])]
        data.reverse()  # servers may answer out of order: the client must restore it by index
        payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    _Handler.log = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", _Handler
    httpd.shutdown()


def test_openai_endpoint_runs_a_matrix(server, tmp_path: Path, smoke_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = server
    monkeypatch.setenv("FAKE_EMBED_URL", url)
    monkeypatch.setenv("FAKE_EMBED_KEY", SECRET)
    handler.fail_next_with_429 = 1
    text = smoke_copy.read_text().replace(
        "models:\n",
        "models:\n  - name: api-embedder\n    model: openai:text-embedding-test\n    base_url_env: FAKE_EMBED_URL\n"
        "    api_key_env: FAKE_EMBED_KEY\n    batch_size: 7\n",
        1,
    )
    smoke_copy.write_text(text)
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 0, result.output
    scores = main_scores(tmp_path / "run")
    api = {k[1:]: v for k, v in scores.items() if k[0] == "api-embedder"}
    assert len(api) == 8
    # a bag-of-words vector still finds the English smoke passages: the ranking path is real
    assert api[("HarnessSmokeRetrieval", "test", "en")] > 0.5
    assert handler.log[0]["auth"] == f"Bearer {SECRET}"
    assert max(entry["n"] for entry in handler.log) <= 7
    # the 429 was retried: exactly one request was refused, and the next one re-sent the same batch
    refused = [i for i, e in enumerate(handler.log) if e["status"] == 429]
    assert refused == [0]
    assert handler.log[1]["status"] == 200 and handler.log[1]["input"] == handler.log[0]["input"]
    answered = [tuple(e["input"]) for e in handler.log if e["status"] == 200]
    assert len(answered) == len(set(answered)), "no batch was sent twice except the refused one"
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file() and f.suffix in {".json", ".log"}:
            assert SECRET not in f.read_text(), f"API key leaked into {f}"

    calls = len(handler.log)
    again = cli("run", str(smoke_copy), "--no-progress")
    assert again.exit_code == 0
    assert len(handler.log) == calls, "a re-run must not call the API again"
