"""Throughput of the OpenAI backend path against the fault-free test double with 200 ms latency.

With concurrency C and per-call latency L the ideal is C / L requests/s (32 / 0.2 s = 160/s). This
runs a real generation job (store-first dispatch, sqlite writes, parsing, language ID) through the
official `openai` client against `generators.testing.fake_openai_server` in a separate process, and
prints the achieved rate as a ratio of the ideal (target >= 0.9).

Run: .venv/bin/python benchmarks/bench_generate_throughput.py [--requests 1600] [--concurrency 32] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generators.commands import generate  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1600)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--no-language-id", action="store_true", help="skip language ID of outputs")
    args = ap.parse_args()

    overflows0 = listen_overflows()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    srv = subprocess.Popen(
        [sys.executable, "-m", "generators.testing.fake_openai_server", "--latency", str(args.latency)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        line = srv.stdout.readline() if srv.stdout else ""
        port = int(line.split()[1])
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "bench.yaml"
            cfg.write_text(yaml.safe_dump({
                "name": "bench", "seed": 1,
                "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url": f"{base}/v1",
                            "base_url_env": None, "api_key_env": "BENCH_UNUSED_KEY",
                            "concurrency": args.concurrency, "timeout_s": 30},
                "tasks": {"sts": {"count": args.requests}},
                "languages": {"en": 1, "fr": 1, "de": 1, "es": 1},
                "filters": {"language_id": not args.no_language_id},
            }))
            os.environ.setdefault("BENCH_UNUSED_KEY", "sk-bench")
            t0 = time.perf_counter()
            m = generate(cfg, Path(tmp) / "out", progress=False)
            wall = time.perf_counter() - t0
        log = json.load(urllib.request.urlopen(f"{base}/_log"))
    finally:
        srv.terminate()
        srv.wait()

    ideal = args.concurrency / args.latency
    stamps = sorted(e["t"] for e in log)
    # server stamps are taken as each response is sent; the first batch started `latency` earlier
    call_phase = stamps[-1] - stamps[0] + args.latency
    rate = len(log) / call_phase
    print(f"requests: {len(log)} (succeeded {m.requests.succeeded}, failed {m.requests.failed}), "
          f"concurrency {args.concurrency}, latency {args.latency * 1000:.0f} ms")
    print(f"call phase: {call_phase:.2f} s -> {rate:.1f} requests/s; ideal {ideal:.0f}/s; ratio {rate / ideal:.3f}")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kid = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU seconds: client {me.ru_utime + me.ru_stime:.2f}, test-double server {kid.ru_utime + kid.ru_stime:.2f}; "
          f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    overflows1 = listen_overflows()
    if overflows0 is not None and overflows1 is not None:
        print(f"listen-queue overflows during the run (system-wide): {overflows1 - overflows0}")
    print(f"whole job incl. startup and output: {wall:.2f} s -> {len(log) / wall:.1f} requests/s, "
          f"ratio {len(log) / wall / ideal:.3f}")


if __name__ == "__main__":
    main()
