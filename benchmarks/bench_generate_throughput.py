"""Throughput of the OpenAI backend path against the fault-free test double with 200 ms latency.

With concurrency C and per-call latency L the ideal is C / L requests/s (32 / 0.2 s = 160/s). This
runs a real generation job (cache-first dispatch, cache writes, parsing, language ID) through the
official `openai` client against `generators.testing.fake_openai_server` in a separate process, and
prints the achieved rate as a ratio of the ideal (target >= 0.9).

Each round runs the same job once per response store, each starting empty, in the same process
against the same server: the run-level file cache (`generators.response_cache`, one file per
answer), with and without an fsync per entry, and the per-step SQLite store it replaced (WAL,
synchronous=NORMAL, one INSERT per answer; kept below as the baseline, not used by the project).
The ratios between them answer whether the file cache costs throughput; the file cache also takes
a per-request claim (a file lock) before each call and the SQLite baseline does not, so its ratio
includes what the claims cost.

Run: .venv/bin/python benchmarks/bench_generate_throughput.py [--requests 1600] [--concurrency 32] [--latency 0.2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generators.backends.base import CallOutcome  # noqa: E402
from generators.commands import _run  # noqa: E402
from generators.config import GenerationConfig  # noqa: E402
from generators.planning import RequestPlanner  # noqa: E402
from generators.progress import Progress  # noqa: E402
from generators.response_cache import CachedResponse, ResponseCache  # noqa: E402


class SqliteBaseline:
    """The per-step store this project used before the run-level cache (baseline only)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, request TEXT, response TEXT,"
                         " finish_reason TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL,"
                         " latency_s REAL, attempts INTEGER, batch INTEGER, created_at REAL)")

    def get(self, key: str) -> CachedResponse | None:
        row = self._db.execute("SELECT key, model, response, finish_reason, prompt_tokens, completion_tokens, cost_usd"
                               " FROM calls WHERE key = ?", (key,)).fetchone()
        return CachedResponse(*row) if row else None

    def claim(self, key: str) -> _NoClaim:
        return _NoClaim()  # the old store took no per-request claim: its rate is the baseline for their cost

    @staticmethod
    def release(claim: _NoClaim, *, answered: bool) -> None:
        pass

    def put(self, outcome: CallOutcome, cost_usd: float | None) -> tuple[CachedResponse, bool]:
        req = outcome.request
        self._db.execute("INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            req.key, req.model, json.dumps(req.canonical(), sort_keys=True, ensure_ascii=False), outcome.text,
            outcome.finish_reason, outcome.prompt_tokens, outcome.completion_tokens, cost_usd, outcome.latency_s,
            outcome.attempts, int(outcome.batch), time.time()))
        return CachedResponse(req.key, req.model, outcome.text, outcome.finish_reason, outcome.prompt_tokens,
                              outcome.completion_tokens, cost_usd), True


class _NoClaim:
    def acquire(self, block: bool = True) -> bool:
        return True

    def release(self) -> None:
        pass


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (Linux; system-wide).

    A dropped SYN is retransmitted only after the 1 s initial RTO, so a nonzero delta during the run
    means some workers sat idle for a second (the test double once listened with a backlog of 5).
    """
    try:
        rows = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
        return int(dict(zip(rows[0], rows[1]))["ListenOverflows"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def _log(base: str) -> list[dict[str, Any]]:
    return json.load(urllib.request.urlopen(f"{base}/_log"))


def run_once(cfg: GenerationConfig, store: Any, tmp: Path, base: str, latency: float) -> dict[str, float]:
    """One job against an empty store; rates from the server's stamps of this job's requests only."""
    before = len(_log(base))
    t0 = time.perf_counter()
    result, _ = asyncio.run(_run(cfg, RequestPlanner(cfg), store, Progress(0, enabled=False), None, tmp))
    wall = time.perf_counter() - t0
    log = _log(base)[before:]
    stamps = sorted(e["t"] for e in log)
    call_phase = stamps[-1] - stamps[0] + latency  # stamps are taken as responses are sent
    assert result.requests.failed == 0 and result.requests.new_calls == len(log)
    return {"requests": len(log), "call_phase_s": call_phase, "rate": len(log) / call_phase, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where the stores go (default: a temporary folder)")
    ap.add_argument("--no-language-id", action="store_true", help="skip language ID of outputs")
    args = ap.parse_args()

    overflows0 = listen_overflows()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srv = subprocess.Popen(
        [sys.executable, "-m", "generators.testing.fake_openai_server", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    variants = ("file cache", "file cache + fsync", "sqlite (old)")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    try:
        line = srv.stdout.readline() if srv.stdout else ""
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        os.environ.setdefault("BENCH_UNUSED_KEY", "sk-bench")
        cfg = GenerationConfig.model_validate({
            "name": "bench", "seed": 1,
            "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url": f"{base}/v1", "base_url_env": None,
                        "api_key_env": "BENCH_UNUSED_KEY", "concurrency": args.concurrency, "timeout_s": 30},
            "tasks": {"sts": {"count": args.requests}},
            "languages": {"en": 1, "fr": 1, "de": 1, "es": 1},
            "filters": {"language_id": not args.no_language_id},
        })
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp_s:
            tmp = Path(tmp_s)
            for r in range(args.rounds):
                for v in variants:
                    where = tmp / f"{r}-{variants.index(v)}"
                    where.mkdir()
                    store: Any = (SqliteBaseline(where / "responses.sqlite") if v.startswith("sqlite")
                                  else ResponseCache(where / "responses", durable="fsync" in v))
                    results[v].append(run_once(cfg, store, where, base, args.latency))
    finally:
        srv.terminate()
        srv.wait()

    ideal = args.concurrency / args.latency
    print(f"{args.requests} requests, concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms, "
          f"ideal {ideal:.0f}/s, {args.rounds} round(s); cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    mean = {v: sum(x["rate"] for x in rs) / len(rs) for v, rs in results.items()}
    for v, rs in results.items():
        calls = " / ".join(f"{x['rate'] / ideal:.3f}" for x in rs)
        whole = " / ".join(f"{x['requests'] / x['wall_s'] / ideal:.3f}" for x in rs)
        print(f"{v:20s} call phase ratio {calls}; whole job ratio {whole}; "
              f"vs sqlite {mean[v] / mean['sqlite (old)']:.3f}")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kid = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU seconds: client {me.ru_utime + me.ru_stime:.2f}, test-double server {kid.ru_utime + kid.ru_stime:.2f}")
    overflows1 = listen_overflows()
    if overflows0 is not None and overflows1 is not None:
        print(f"listen-queue overflows during the run (system-wide): {overflows1 - overflows0}")


if __name__ == "__main__":
    main()
