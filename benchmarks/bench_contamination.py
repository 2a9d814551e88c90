"""Cost of the contamination filter with SciFact + XQuAD (all languages) as the contamination set.

Run from the repo root: .venv/bin/python benchmarks/bench_contamination.py
Prints build time, memory, and per-field check time against the exact-only set it replaced.
"""

from __future__ import annotations

import gzip
import json
import resource
import time
from pathlib import Path

from generators.contamination import ContaminationFilter, eval_strings, squash

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    paths = [DATA / "scifact", DATA / "xquad_retrieval"]
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    f = ContaminationFilter(paths)
    build = time.perf_counter() - t
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    t = time.perf_counter()
    keys = {squash(s) for s, _ in eval_strings(paths)}
    exact_build = time.perf_counter() - t
    texts = []
    with gzip.open(DATA / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i >= 3000:
                break
            if i >= 2000:  # 1,000 planted excerpts of eval passages
                texts.append("Generated: " + json.loads(line)["text"][:400] + " and more new words here")
    texts += [f"A fresh generated sentence number {i} about gardening, cooking and household chores." for i in range(1000)]
    t = time.perf_counter()
    flagged = sum(f.check(x) is not None for x in texts)
    per = (time.perf_counter() - t) / len(texts)
    t = time.perf_counter()
    sum(squash(x) in keys for x in texts)
    per_exact = (time.perf_counter() - t) / len(texts)
    print(f"eval strings {len(f)}, indexed {f.indexed}, 5-grams {len(f._hashes)}; build {build:.2f} s "
          f"(exact-only {exact_build:.2f} s); +{rss:.0f} MiB RSS; check {per * 1e3:.3f} ms/field "
          f"(exact-only {per_exact * 1e3:.3f} ms); flagged {flagged}/{len(texts)} (1000 planted)")


if __name__ == "__main__":
    main()
