"""A fault-injecting test double of an OpenAI-compatible chat endpoint (stdlib only).

It is NOT a model: it serves canned, schema-shaped JSON completions (in the language the prompt asks
for, from small sentence banks) and injects the failures a real endpoint produces — 429 with
Retry-After, 500s, responses slower than the client's timeout, malformed HTTP bodies, and completions
whose content is not JSON — deterministically per request, so tests can count outcomes exactly. It
logs every request (with the client's X-Request-Key) so a test can prove which calls were repeated,
and can hold completions after a given number so a test can kill a client at a known point.

Run standalone for benchmarks: python -m generators.testing.fake_openai_server --latency 0.2
(prints `PORT <n>` on stdout once listening).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BANKS: dict[str, list[str]] = {
    "English": [
        "The committee reviewed the annual budget and approved new funding for public libraries",
        "Regular exercise improves sleep quality and reduces the risk of heart disease",
        "The river flooded the valley after three days of heavy rain in the mountains",
        "Students learn faster when teachers explain the reasons behind every rule",
        "The museum opened a new exhibition about ancient trade routes across the desert",
        "Farmers in the region changed their crops because the summers became much hotter",
    ],
    "French": [
        "Le comité a examiné le budget annuel et approuvé de nouveaux fonds pour les bibliothèques",
        "La pratique régulière du sport améliore la qualité du sommeil et protège le cœur",
        "La rivière a inondé la vallée après trois jours de pluie dans les montagnes",
        "Les élèves apprennent plus vite quand les professeurs expliquent les raisons de chaque règle",
        "Le musée a ouvert une nouvelle exposition sur les anciennes routes commerciales du désert",
        "Les agriculteurs de la région ont changé leurs cultures parce que les étés sont plus chauds",
    ],
    "German": [
        "Der Ausschuss prüfte den Jahreshaushalt und bewilligte neue Mittel für öffentliche Bibliotheken",
        "Regelmäßige Bewegung verbessert die Schlafqualität und senkt das Risiko für Herzkrankheiten",
        "Der Fluss überschwemmte das Tal nach drei Tagen mit starkem Regen in den Bergen",
        "Schüler lernen schneller, wenn Lehrer die Gründe hinter jeder Regel erklären",
        "Das Museum eröffnete eine neue Ausstellung über alte Handelswege durch die Wüste",
        "Die Bauern der Region änderten ihre Pflanzen, weil die Sommer viel heißer wurden",
    ],
    "Spanish": [
        "El comité revisó el presupuesto anual y aprobó nuevos fondos para las bibliotecas públicas",
        "El ejercicio regular mejora la calidad del sueño y reduce el riesgo de enfermedades del corazón",
        "El río inundó el valle después de tres días de lluvias intensas en las montañas",
        "Los estudiantes aprenden más rápido cuando los profesores explican las razones de cada regla",
        "El museo abrió una nueva exposición sobre las antiguas rutas comerciales del desierto",
        "Los agricultores de la región cambiaron sus cultivos porque los veranos son mucho más calurosos",
    ],
}

_LANG_RE = re.compile(r"\b(English|French|German|Spanish)\b")


def _u(key: str, salt: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64


def canned_content(body: dict[str, Any], key: str) -> str:
    """A valid JSON completion shaped like what the prompt asks for, varied by the request key."""
    prompt = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    n = int(_u(key, "n") * 1_000_000)
    if "Brainstorm" in prompt:
        m = re.search(r"holds (\d+) strings", prompt)
        k = int(m.group(1)) if m else 5
        return json.dumps({"tasks": [f"Retrieve documents about topic number {n + i} for a user question." for i in range(k)]})
    langs = _LANG_RE.findall(prompt.split("guidelines")[-1]) or ["English"]
    src = langs[0]
    tgt = langs[1] if len(langs) > 1 else src
    pair = re.search(r"one \w+ in (\w+) and two \w+s in (\w+)", prompt)
    if pair:
        src, tgt = pair.group(1), pair.group(2)

    def s(lang: str, j: int) -> str:
        bank = BANKS.get(lang, BANKS["English"])
        return f"{bank[(n + j) % len(bank)]} {n % 997 + j}."

    if '"S1"' in prompt:
        return json.dumps({"S1": s(src, 0), "S2": s(tgt, 1), "S3": s(tgt, 2)}, ensure_ascii=False)
    if '"label"' in prompt:
        return json.dumps({"input_text": s(src, 0) + " " + s(src, 3), "label": s(src, 1), "misleading_label": s(src, 2)}, ensure_ascii=False)
    qkey = "input_text" if '"input_text"' in prompt else "user_query"
    return json.dumps({qkey: s(src, 0), "positive_document": s(src, 1) + " " + s(src, 4),
                       "hard_negative_document": s(src, 2) + " " + s(src, 5)}, ensure_ascii=False)


@dataclass
class FaultPlan:
    """Fractions of distinct requests that get each fault (bands of a per-request hash, so exact).

    `dead` requests fail with 500 on every attempt; `bad_content` ones always return non-JSON
    content; the others fault on their first attempt only, then succeed.
    """

    dead: float = 0.0
    bad_content: float = 0.0
    rate_limited: float = 0.0
    server_error: float = 0.0
    timeout: float = 0.0
    bad_body: float = 0.0
    retry_after_s: float = 1.0
    timeout_delay_s: float = 5.0
    latency_s: float = 0.0

    def fault(self, key: str, attempt: int) -> str | None:
        u = _u(key, "fault")
        edges = [("dead", self.dead), ("bad_content", self.bad_content), ("429", self.rate_limited),
                 ("500", self.server_error), ("timeout", self.timeout), ("bad_body", self.bad_body)]
        lo = 0.0
        for name, width in edges:
            if lo <= u < lo + width:
                if name in ("dead", "bad_content") or attempt == 1:
                    return name
                return None
            lo += width
        return None


@dataclass
class LogEntry:
    t: float
    key: str
    attempt: int
    outcome: str
    phase: str


@dataclass
class _State:
    plan: FaultPlan
    log: list[LogEntry] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    phase: str = "1"
    hold_after: int | None = None
    served_ok: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    auth_headers: list[str] = field(default_factory=list)
    # Concurrency: how many completions are being served right now, the most ever at once, and an
    # optional meeting point (``gather``) that holds requests until that many are in flight together.
    in_flight: int = 0
    max_in_flight: int = 0
    gather_n: int | None = None
    gather_timeout_s: float = 30.0
    gathered: bool = False
    arrivals: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; Nagle + delayed ACK would add ~40 ms
    state: _State  # set on the subclass

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/_log":
            with self.state.lock:
                data = [e.__dict__ for e in self.state.log]
            self._send(200, json.dumps(data).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        st = self.state
        with st.arrivals:
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
            st.arrivals.notify_all()
            if st.gather_n is not None and not st.gathered:
                st.gathered = st.arrivals.wait_for(lambda: st.in_flight >= st.gather_n, st.gather_timeout_s)  # type: ignore[operator]
        try:
            self._post()
        finally:
            with st.arrivals:
                st.in_flight -= 1

    def _post(self) -> None:
        st = self.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        key = self.headers.get("X-Request-Key") or hashlib.sha256(raw).hexdigest()
        with st.lock:
            st.auth_headers.append(self.headers.get("Authorization", ""))
            attempt = st.attempts.get(key, 0) + 1
            st.attempts[key] = attempt
            phase = st.phase
        fault = st.plan.fault(key, attempt)
        if st.plan.latency_s:
            time.sleep(st.plan.latency_s)

        def record(outcome: str) -> None:
            with st.lock:
                st.log.append(LogEntry(time.time(), key, attempt, outcome, phase))

        if fault == "429":
            record("429")
            self._send(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                       {"Retry-After": f"{st.plan.retry_after_s:g}"})
            return
        if fault in ("500", "dead"):
            record("500")
            self._send(500, b'{"error": {"message": "internal error"}}')
            return
        if fault == "timeout":
            record("timeout")
            time.sleep(st.plan.timeout_delay_s)
            self._send(200, b'{"error": "too late"}')
            return
        if fault == "bad_body":
            record("bad_body")
            self._send(200, b'{"id": "x", "choices": [ {"message": ')
            return
        if st.hold_after is not None:
            with st.lock:
                held = st.served_ok >= st.hold_after
            if held:
                record("held")
                st.release.wait()
                self._send(503, b'{"error": {"message": "released"}}')
                return
        content = "this is not JSON {" if fault == "bad_content" else canned_content(body, key)
        ptoks = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        ctoks = len(content.split())
        payload = {
            "id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks},
        }
        with st.lock:
            st.served_ok += 1
        record("ok" if fault is None else fault)
        self._send(200, json.dumps(payload).encode())


class _Server(ThreadingHTTPServer):
    # Both must be class attributes: the constructor binds and calls listen(request_queue_size), so
    # setting them on the instance afterwards has no effect. With the default backlog of 5, a client
    # opening 32 connections at once overflows the accept queue; the dropped SYNs are retransmitted
    # only after the kernel's 1 s initial RTO, which stalls those workers for a second.
    daemon_threads = True
    request_queue_size = 1024


class FakeOpenAIServer:
    """The test double, served from a daemon thread on 127.0.0.1 (port 0 picks a free port)."""

    def __init__(self, plan: FaultPlan | None = None, port: int = 0) -> None:
        self.state = _State(plan or FaultPlan())
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = _Server(("127.0.0.1", port), handler)
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def log(self) -> list[LogEntry]:
        with self.state.lock:
            return list(self.state.log)

    def gather(self, n: int, timeout_s: float = 30.0) -> None:
        """Hold the first requests until ``n`` are in flight at once (then let every request through);
        after ``timeout_s`` without that, let them through anyway and leave ``gathered`` False. A test
        that ``n`` clients really run at the same time asserts ``gathered`` instead of timing them."""
        with self.state.arrivals:
            self.state.gather_n, self.state.gather_timeout_s, self.state.gathered = n, timeout_s, False

    @property
    def gathered(self) -> bool:
        return self.state.gathered

    @property
    def max_in_flight(self) -> int:
        return self.state.max_in_flight

    def set_phase(self, phase: str) -> None:
        with self.state.lock:
            self.state.phase = phase

    def hold_after(self, n: int | None) -> None:
        """Hold every completion after the n-th successful one until `release()` (n=None: never)."""
        with self.state.lock:
            self.state.hold_after = n
            self.state.release.clear()

    def release(self) -> None:
        with self.state.lock:
            self.state.hold_after = None
        self.state.release.set()

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    args = ap.parse_args(argv)
    srv = FakeOpenAIServer(FaultPlan(latency_s=args.latency), port=args.port)
    print(f"PORT {srv.port}", flush=True)
    try:
        srv.httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
