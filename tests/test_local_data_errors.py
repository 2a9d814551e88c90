"""Malformed local data is reported (file, line, fix) before any cell runs; exit 2, nothing written."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.helpers import cli


def test_malformed_qrels_line_is_named(tmp_path: Path, smoke_copy: Path) -> None:
    qrels = tmp_path / "smoke_data" / "retrieval" / "de" / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines()
    lines[3] = lines[3].replace("\t", " ")
    qrels.write_text("\n".join(lines) + "\n")
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 2, result.output
    assert f"{qrels}: line 4: expected 3 tab-separated columns" in result.output
    assert "Fix: write 'query-id<TAB>corpus-id<TAB>score'" in result.output
    assert not (tmp_path / "run").exists()


def test_empty_corpus_is_named(tmp_path: Path, smoke_copy: Path) -> None:
    corpus = tmp_path / "smoke_data" / "retrieval" / "fr" / "corpus.jsonl"
    corpus.write_text("")
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 2, result.output
    assert f"{corpus}: the corpus is empty" in result.output
    assert not (tmp_path / "run").exists()


def test_bad_json_line_in_gzip_corpus(tmp_path: Path, smoke_copy: Path) -> None:
    folder = tmp_path / "smoke_data" / "retrieval" / "en"
    text = (folder / "corpus.jsonl").read_text().splitlines()
    text[2] = text[2][:-5]
    (folder / "corpus.jsonl").unlink()
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(text) + "\n")
    result = cli("validate", str(smoke_copy))
    assert result.exit_code == 2, result.output
    assert "corpus.jsonl.gz: line 3: not valid JSON" in result.output


def test_missing_split_file(tmp_path: Path, smoke_copy: Path) -> None:
    (tmp_path / "smoke_data" / "sts" / "de" / "test.jsonl").unlink()
    result = cli("run", str(smoke_copy), "--no-progress")
    assert result.exit_code == 2, result.output
    assert "split(s) test missing" in result.output and "sts/de" in result.output
    assert not (tmp_path / "run").exists()
