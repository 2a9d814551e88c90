"""Issue #10 items 1, 2, 5 and the failure bound of item 7: per-field language checks, near-copy
contamination against the real eval sets in ../shared/data, bitext languages, and a job whose calls
failed exiting non-zero."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from generators.backends.base import CallOutcome, ChatRequest
from generators.commands import check_failures
from generators.config import GenerationConfig, load_config
from generators.contamination import (CONTAINS_EVAL_TEXT, COPIED_FROM_EVAL_TEXT, EXACT, NEAR_DUPLICATE,
                                      ContaminationFilter)
from generators.errors import GenerationFailedError, GeneratorInputError
from generators.filters import LANGUAGE_MISMATCH, LanguageChecker
from generators.output import RequestCounts
from generators.pipeline import Job
from generators.planning import Planned
from generators.progress import Progress
from generators.response_cache import ResponseCache
from generators.taxonomy import TaskType, spec
from generators.templates import load_template

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCIFACT = DATA / "scifact"
XQUAD = DATA / "xquad_retrieval"
needs_data = pytest.mark.skipif(not SCIFACT.exists() or not XQUAD.exists(), reason="../shared/data not present")


# -- item 1: each field is checked on its own ------------------------------------------------------
class _NoBackend:
    model_name = "none"
    name = "none"


def _judge(tmp_path: Path, task: TaskType, reply: dict[str, str], language: str = "en",
           target: str | None = None, contamination: ContaminationFilter | None = None) -> tuple[object, Job]:
    cfg = GenerationConfig.model_validate({"backend": {"kind": "local"}, "tasks": {task.value: {"count": 1}},
                                           "languages": {"en": 1, "de": 1}, "filters": {"language_min_chars": 20}})
    job = Job(cfg, _NoBackend(), ResponseCache(tmp_path / "responses"), Progress(0, enabled=False), contamination)  # type: ignore[arg-type]
    job.lang_checker = LanguageChecker(20)
    job._lang_loading = None
    req = ChatRequest(model="none", messages=(("user", "x"),), temperature=1, top_p=1, max_tokens=9, seed=0)
    tpl = load_template(f"compact/{spec(task).generate_template}")
    p = Planned(task, 0, language, target, "Retrieve things.", tpl, {}, req)
    return job._judge(p, CallOutcome(req, ok=True, text=json.dumps(reply), finish_reason="stop")), job


EN_DOC = ("The mitochondrion is the organelle in which most of the cell's chemical energy is produced, "
          "through oxidative phosphorylation along the inner membrane.")


def test_wrong_language_query_beside_long_documents_is_rejected(tmp_path: Path) -> None:
    reply = {"user_query": "Wie erzeugen die Zellen ihre Energie im Körper?", "positive_document": EN_DOC,
             "hard_negative_document": EN_DOC.replace("mitochondrion", "chloroplast")}
    row, job = _judge(tmp_path, TaskType.SHORT_LONG, reply)
    assert row is None and job.rejects[LANGUAGE_MISMATCH] == 1
    assert dict(job.rejects_by_field[LANGUAGE_MISMATCH]) == {"query": 1}
    assert job.lang_stats["checked_query"] == 1 and job.lang_stats["checked_positive"] == 1

    ok = dict(reply, user_query="How do cells produce their energy in the body?")
    row, job = _judge(tmp_path, TaskType.SHORT_LONG, ok)
    assert row is not None and not job.rejects


def test_too_short_field_passes_unchecked_and_is_counted(tmp_path: Path) -> None:
    reply = {"user_query": "Zellenergie?", "positive_document": EN_DOC, "hard_negative_document": EN_DOC + " Also."}
    row, job = _judge(tmp_path, TaskType.SHORT_LONG, reply)
    assert row is not None and job.lang_stats["unchecked_query"] == 1


def test_bitext_checks_documents_in_the_target_language(tmp_path: Path) -> None:
    reply = {"S1": "The weather is very nice today in the mountains.",
             "S2": "Das Wetter ist heute in den Bergen sehr schön.",
             "S3": "The weather is very bad today in the valley below."}
    row, job = _judge(tmp_path, TaskType.BITEXT, reply, language="en", target="de")
    assert row is None and dict(job.rejects_by_field[LANGUAGE_MISMATCH]) == {"hard_negative": 1}


def test_contamination_rejects_counted_per_field_and_reason(tmp_path: Path) -> None:
    evals = tmp_path / "evalset"
    evals.mkdir()
    claim = "Vitamin D supplementation lowers the incidence of respiratory infections in older adults."
    (evals / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": claim}) + "\n")
    reply = {"user_query": "How do cells produce their energy in the body?",
             "positive_document": EN_DOC + " A recent review concluded: " + claim,
             "hard_negative_document": EN_DOC.replace("mitochondrion", "chloroplast")}
    row, job = _judge(tmp_path, TaskType.SHORT_LONG, reply)
    assert row is not None
    row, job2 = _judge(tmp_path, TaskType.SHORT_LONG, reply, contamination=ContaminationFilter([evals]))
    assert row is None
    assert dict(job2.rejects_by_field["contaminated"]) == {"positive": 1}
    assert dict(job2.contamination_reasons) == {CONTAINS_EVAL_TEXT: 1}


# -- item 2: near copies of real eval data -----------------------------------------------------------
def _first(path: Path, n: int = 0) -> dict:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for i, line in enumerate(fh):
            if i == n:
                return json.loads(line)
    raise AssertionError


@pytest.fixture(scope="module")
def eval_filter() -> ContaminationFilter:
    if not SCIFACT.exists() or not XQUAD.exists():
        pytest.skip("../shared/data not present")
    return ContaminationFilter([SCIFACT, XQUAD])


@needs_data
def test_planted_near_copies_are_caught_with_their_reason(eval_filter: ContaminationFilter) -> None:
    doc = _first(SCIFACT / "corpus.jsonl.gz", 3)["text"]
    sentences = doc.split(". ")
    assert len(sentences) >= 4
    one_changed = ". ".join(sentences[:1] + ["We also measured something entirely unrelated in mice"] + sentences[2:])
    assert eval_filter.check(one_changed)[0] == NEAR_DUPLICATE  # type: ignore[index]

    query = _first(SCIFACT / "queries.jsonl", 5)["text"]
    wrapped = (f"A long generated passage about immunology and public health policy. It then states that {query} "
               "and continues with several sentences on funding, hospital capacity and a regional vaccination campaign.")
    assert eval_filter.check(wrapped)[0] == CONTAINS_EVAL_TEXT  # type: ignore[index]

    excerpt = " ".join(doc.split()[10:40])
    assert eval_filter.check(excerpt)[0] == COPIED_FROM_EVAL_TEXT  # type: ignore[index]

    de_q = _first(XQUAD / "de" / "queries.jsonl", 7)["text"]
    assert eval_filter.check(de_q.upper())[0] == EXACT  # type: ignore[index]
    zh_ctx = _first(XQUAD / "zh" / "corpus.jsonl", 2)["text"]
    assert eval_filter.check(zh_ctx[:-12] + "这是一个完全不同的结尾。")[0] == NEAR_DUPLICATE  # type: ignore[index]


@needs_data
def test_fresh_text_is_not_flagged(eval_filter: ContaminationFilter) -> None:
    fresh = [
        "How do I repot a fiddle leaf fig without damaging its roots during the winter months?",
        "Die Stadtbibliothek verlängert ihre Öffnungszeiten am Wochenende, damit Studierende länger lernen können.",
        "Regular calibration of kitchen scales matters for bakers who measure flour by weight rather than volume.",
        "the effect of", "in this study we",
    ]
    assert [eval_filter.check(t) for t in fresh] == [None] * len(fresh)


def test_malformed_eval_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text('{"_id": "1", "text": "fine"}\n{"_id": "2", "text": \n')
    with pytest.raises(GeneratorInputError) as err:
        ContaminationFilter([tmp_path])
    assert "queries.jsonl, line 2: not valid JSON" in str(err.value) and "Fix:" in str(err.value)
    (tmp_path / "queries.jsonl").write_text('["a list"]\n')
    with pytest.raises(GeneratorInputError, match="line 1"):
        ContaminationFilter([tmp_path])


def test_malformed_eval_file_stops_cli_with_exit_2_and_nothing_written(tmp_path: Path) -> None:
    bad = tmp_path / "evalset"
    bad.mkdir()
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\nnot json\n')
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(yaml.safe_dump({"backend": {"kind": "local"}, "tasks": {"sts": {"count": 1}},
                                   "filters": {"contamination": ["evalset"]}, "output": "out"}))
    r = subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", "generate", str(cfg), "--no-progress"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "corpus.jsonl, line 2: not valid JSON" in r.stderr
    assert not (tmp_path / "out").exists()


# -- item 5: bitext needs two languages ------------------------------------------------------------
def test_bitext_with_one_language_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "g.yaml"
    p.write_text(yaml.safe_dump({"backend": {"kind": "local"}, "tasks": {"bitext": {"count": 2}}, "languages": {"en": 1}}))
    with pytest.raises(GeneratorInputError) as err:
        load_config(p)
    assert "field 'languages'" in str(err.value) and "second language" in str(err.value)
    p.write_text(yaml.safe_dump({"backend": {"kind": "local"}, "tasks": {"sts": {"count": 2}}, "languages": {"en": 1}}))
    load_config(p)  # one language is fine without bitext


# -- item 7: failed calls fail the job -------------------------------------------------------------
def test_failure_bound() -> None:
    check_failures(RequestCounts(total=10, succeeded=6, failed=4), 0.5)
    with pytest.raises(GenerationFailedError, match="6 of 10 calls failed"):
        check_failures(RequestCounts(total=10, succeeded=4, failed=6, failed_by_reason={"HTTP 500: boom": 6}), 0.5)
    with pytest.raises(GenerationFailedError, match=r"3 of 3 calls failed \(all of them\).*HTTP 422"):
        check_failures(RequestCounts(total=3, failed=3, failed_by_reason={"HTTP 422 invalid request: bad": 3}), 1.0)


def test_server_message_kept_without_keys_and_invalid_requests_recognised() -> None:
    from generators.backends.openai_backend import is_invalid_request, server_message

    llama = {"error": {"message": "1 validation error:\n {'loc': ('body', 'response_format', 'type'), 'msg': "
                                  "\"Input should be 'text' or 'json_object'\"}", "type": "internal_server_error"}}
    msg = server_message(llama)
    assert "Input should be 'text' or 'json_object'" in msg and "\n" not in msg
    assert is_invalid_request(500, llama, msg)  # llama-cpp-python: validation failure answered as 500
    fastapi = {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}
    assert server_message(fastapi) == "body.messages: field required" and is_invalid_request(422, fastapi, "")
    oai = {"error": {"message": "Incorrect API key provided: sk-abc123456789", "type": "invalid_request_error"}}
    assert "sk-abc" not in server_message(oai) and is_invalid_request(401, oai, server_message(oai))
    assert server_message({"error": {"message": "my key is s3cr3t"}}, secret="s3cr3t") == "my key is ***"
    busy = {"error": {"message": "CUDA out of memory", "type": "internal_server_error"}}
    assert not is_invalid_request(500, busy, server_message(busy))  # transient: retried
    assert not is_invalid_request(503, None, "")
