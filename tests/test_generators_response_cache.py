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
