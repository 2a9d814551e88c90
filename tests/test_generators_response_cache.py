"""Issue 17 (f): the run-level response cache shared by many writers (processes here; hosts in a Ray
run, through the same link-based publication) loses nothing, keeps the first answer of a key, and
leaves no temporary file behind. The kill -9 case is in tests/test_generators_openai_server.py."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from generators.backends.base import CallOutcome, ChatRequest
from generators.response_cache import ResponseCache

N_SHARED, N_OWN = 150, 150


def _req(i: int) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=(("user", f"question {i}"),), temperature=1.0, top_p=1.0,
                       max_tokens=32, seed=i)


def _writer(root: str, who: int, barrier: mp.synchronize.Barrier, results: mp.Queue) -> None:  # type: ignore[name-defined]
    cache = ResponseCache(Path(root))
    shared = list(range(N_SHARED)) if who == 0 else list(reversed(range(N_SHARED)))  # they meet in the middle
    own = list(range(1000 * (who + 1), 1000 * (who + 1) + N_OWN))
    barrier.wait()  # both start writing at the same moment
    answers = {}
    for i in [x for pair in zip(shared, own) for x in pair]:
        kept, _ = cache.put(CallOutcome(_req(i), ok=True, text=f"answer {i} from {who}", prompt_tokens=3,
                                        completion_tokens=4), 0.001)
        answers[_req(i).key] = kept.response
    results.put(answers)


def test_two_processes_writing_at_once_lose_nothing_and_agree(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "responses"), w, barrier, results)) for w in (0, 1)]
    for p in procs:
        p.start()
    seen = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    cache = ResponseCache(tmp_path / "responses")
    expected = {_req(i).key for i in range(N_SHARED)} | {_req(i).key for w in (0, 1)
                                                          for i in range(1000 * (w + 1), 1000 * (w + 1) + N_OWN)}
    assert set(cache.keys()) == expected and len(cache) == N_SHARED + 2 * N_OWN  # nothing lost
    for key in expected:
        stored = cache.get(key)
        assert stored is not None and stored.prompt_tokens == 3
        # every writer that put this key was handed the one answer the cache keeps (first writer wins)
        assert all(s[key] == stored.response for s in seen if key in s)
    winners = {stored.response.rsplit(" ", 1)[1] for key in expected if (stored := cache.get(key)) is not None
               and key in seen[0] and key in seen[1]}
    print(f"shared keys stored first by writer(s) {sorted(winners)}")  # both, unless one was descheduled throughout
    assert [p for p in (tmp_path / "responses").rglob("*") if p.name.startswith(".") and p.is_file()] == []


def test_two_jobs_asking_the_same_requests_at_once_pay_for_each_once(tmp_path: Path, monkeypatch) -> None:
    """Two generations of one config (two threads here, as ``--jobs 2`` runs them; processes and hosts
    take the same file locks) start together against the test double, which answers each call after
    0.3 s, so neither job can find the other's answers in the cache before it sends: the per-request
    claim makes the second wait for the first and read its answer. Counted at the server."""
    import threading
    from collections import Counter

    import yaml

    from generators.commands import generate
    from generators.config import load_config
    from generators.testing.fake_openai_server import FakeOpenAIServer, FaultPlan

    server = FakeOpenAIServer(FaultPlan(latency_s=0.3)).start()
    monkeypatch.setenv("CLAIM_TEST_URL", server.base_url)
    monkeypatch.setenv("CLAIM_TEST_KEY", "sk-test-not-a-secret")
    config = tmp_path / "gen.yaml"
    config.write_text(yaml.safe_dump({
        "name": "claims", "seed": 1, "languages": {"en": 1}, "sampling": {"max_tokens": 200},
        "backend": {"kind": "openai", "model": "gpt-4o-mini", "base_url_env": "CLAIM_TEST_URL",
                    "api_key_env": "CLAIM_TEST_KEY", "concurrency": 8},
        "tasks": {"short-long": {"count": 6, "brainstorm_calls": 1, "tasks_per_brainstorm": 3}, "sts": {"count": 4}}}))
    cfg = load_config(config)
    start = threading.Barrier(2)
    manifests: dict[int, object] = {}

    def job(i: int) -> None:
        start.wait()
        manifests[i] = generate(cfg, tmp_path / f"out{i}", responses=tmp_path / "responses", progress=False, source=config)

    try:
        threads = [threading.Thread(target=job, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        answered = Counter(e.key for e in server.log if e.outcome == "ok")
    finally:
        server.stop()
    assert len(manifests) == 2 and len(answered) == 1 + 6 + 4  # one brainstorm, six examples, four STS pairs
    assert set(answered.values()) == {1}, f"answered more than once: {[k for k, n in answered.items() if n > 1]}"
    paid = [m.requests.new_calls for m in manifests.values()]  # type: ignore[attr-defined]
    assert sum(paid) == len(answered)
    assert (tmp_path / "out0" / "examples.jsonl").read_bytes() == (tmp_path / "out1" / "examples.jsonl").read_bytes()
    left = [p.name for p in (tmp_path / "responses").rglob(".*.lock")]
    assert left == []  # every claim's lock file goes once its answer is stored


def test_a_local_batch_never_waits_for_a_claim_while_it_holds_others() -> None:
    """The local backend gathers a batch under claims; a request another job is sending is put back
    for a later batch (where it is first, and may wait, holding nothing): two jobs gathering batches
    in different orders must not each hold a claim the other waits for."""
    import asyncio

    from generators.backends.base import BUSY
    from generators.backends.local_backend import _batches

    reqs = [_req(i) for i in range(5)]
    busy_once = {reqs[1].key}
    calls: list[tuple[int, bool, int]] = []  # (request, wait, claims held by this job at that moment)
    held: set[str] = set()

    class Gate:
        async def admit(self, request: ChatRequest, *, wait: bool = True):
            calls.append((reqs.index(request), wait, len(held)))
            if request.key in busy_once and not wait:
                busy_once.discard(request.key)
                return BUSY
            held.add(request.key)
            return None

    async def gather() -> list[list[int]]:
        out = []
        async for batch in _batches(reqs, 3, Gate()):
            out.append([reqs.index(r) for r in batch])
            held.clear()  # the batch ran and its answers were stored
        return out

    assert asyncio.run(gather()) == [[0, 2, 3], [1, 4]]
    assert all(held_then == 0 for _, wait, held_then in calls if wait)  # waited only while holding nothing
