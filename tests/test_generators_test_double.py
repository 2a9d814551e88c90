"""The fault-injecting OpenAI test double must accept a burst of connections without drops.

A listen backlog of 5 (Python's default, which an attribute set after ``listen()`` does not
change) dropped a third of a 32-worker client's first connections; the kernel retried them after
1 s and the throughput benchmark lost ~5%. The kernel's own drop counter is checked, not time.
"""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest

from generators.testing.fake_openai_server import FakeOpenAIServer

NETSTAT = Path("/proc/net/netstat")


def _listen_overflows() -> int:
    lines = NETSTAT.read_text().splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        if header.startswith("TcpExt:"):
            return int(dict(zip(header.split()[1:], values.split()[1:]))["ListenOverflows"])
    raise RuntimeError("no TcpExt line")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not NETSTAT.exists(), reason="needs Linux /proc/net/netstat")
def test_burst_of_64_connections_is_not_dropped() -> None:
    with FakeOpenAIServer() as srv:
        before = _listen_overflows()
        barrier = threading.Barrier(64)
        sockets: list[socket.socket] = []
        lock = threading.Lock()

        def connect() -> None:
            barrier.wait()
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            with lock:
                sockets.append(s)

        threads = [threading.Thread(target=connect) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in sockets:
            s.close()
        assert len(sockets) == 64
        assert _listen_overflows() - before == 0
