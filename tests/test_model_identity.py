"""Model identity (issue #7 item 1): every byte counts, hashed once; GGUF, hub, API and adapters keyed exactly."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from harness.schema import load_matrix
from harness.errors import InputError
import contentid as fingerprint
from contentid import clear_process_memo, content_fingerprint
from harness.evaluation.models.identity import model_identity
from harness.evaluation.models.reference import ModelReference
from harness.pipeline.planner import build_plan
from tests.helpers import cli


def _model_dir(root: Path, weights: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text('{"architectures": ["BertModel"]}')
    (root / "model.safetensors").write_bytes(weights)
    (root / "modeling_custom.py").write_text("SCALE = 1.0\n")
    return root


def test_a_byte_changed_in_the_middle_of_a_large_weight_file_changes_the_fingerprint(tmp_path: Path) -> None:
    size = 20 << 20  # 20 MiB: the old sampler read ~9 MiB of it
    weights = bytearray(os.urandom(size))
    a = content_fingerprint(str(_model_dir(tmp_path / "a", bytes(weights))))
    weights[4 << 20] ^= 0xFF  # 4 MiB: between the old samples at 2.5-3.5 and 5-6 MiB
    b = content_fingerprint(str(_model_dir(tmp_path / "b", bytes(weights))))
    assert a != b


def test_custom_code_is_part_of_the_fingerprint(tmp_path: Path) -> None:
    d = _model_dir(tmp_path / "m", b"weights")
    before = content_fingerprint(str(d))
    (d / "modeling_custom.py").write_text("SCALE = 2.0\n")
    assert content_fingerprint(str(d)) != before


def test_digest_is_memoised_in_process_and_on_disk_and_invalidated_by_a_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_FINGERPRINT_MEMO", str(tmp_path / "memo.sqlite"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    reads: list[str] = []
    real = hashlib.file_digest

    def counting(fh, algo):  # type: ignore[no-untyped-def]
        reads.append(fh.name)
        return real(fh, algo)

    monkeypatch.setattr(fingerprint.hashlib, "file_digest", counting)
    first = fingerprint.file_digest(f)
    assert first == hashlib.sha256(b"x" * 1000).hexdigest() and len(reads) == 1
    assert fingerprint.file_digest(f) == first and len(reads) == 1  # process memo
    clear_process_memo()
    assert fingerprint.file_digest(f) == first and len(reads) == 1  # disk memo (a new process would see this)
    f.write_bytes(b"y" * 1000)  # same size, new mtime
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert fingerprint.file_digest(f) == hashlib.sha256(b"y" * 1000).hexdigest() and len(reads) == 2


def test_two_gguf_quantizations_in_one_folder_have_different_identities(tmp_path: Path) -> None:
    (tmp_path / "q4.gguf").write_bytes(b"GGUF-q4")
    (tmp_path / "q8.gguf").write_bytes(b"GGUF-q8")
    ref = ModelReference("path", str(tmp_path))
    q4 = model_identity(ref, gguf_file="q4.gguf")
    q8 = model_identity(ref, gguf_file="q8.gguf")
    assert q4.content != q8.content and q4.gguf_file == "q4.gguf"
    (tmp_path / "q2.gguf").write_bytes(b"GGUF-q2")  # a third quantization does not change the first two
    assert model_identity(ref, gguf_file="q4.gguf").content == q4.content
    with pytest.raises(InputError, match="3 GGUF files"):
        model_identity(ref)


def _fake_hub_cache(cache: Path, repo: str, commit: str, files: dict[str, str] | None = None) -> None:
    base = cache / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(commit)
    for rel, text in (files or {}).items():
        p = base / "snapshots" / commit / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _matrix(tmp_path: Path, model_lines: str) -> Path:
    m = tmp_path / "m.yaml"
    m.write_text(f"name: ident\noutput: {tmp_path / 'run'}\nmodels:\n  - name: x\n{model_lines}"
                 "tasks:\n  - name: HarnessSmokeSTS\n")
    return m


def test_hub_model_key_follows_the_resolved_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    m = _matrix(tmp_path, "    model: someorg/some-model\n")
    _fake_hub_cache(cache, "someorg/some-model", "a" * 40)
    first = build_plan(load_matrix(m), load_data=False)
    assert first.models[0].resolved.identity.content == f"hub:someorg/some-model@{'a' * 40}"
    _fake_hub_cache(cache, "someorg/some-model", "b" * 40)  # main moved
    second = build_plan(load_matrix(m), load_data=False)
    assert first.models[0].key != second.models[0].key
    assert first.models[0].revision != second.models[0].revision
    assert first.of_kind("evaluate")[0].key != second.of_kind("evaluate")[0].key


def test_unresolvable_hub_model_is_bad_input_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("run", str(_matrix(tmp_path, "    model: someorg/not-downloaded\n")), "--no-progress")
    assert result.exit_code == 2
    assert "cannot resolve hub model 'someorg/not-downloaded'" in result.output
    assert not (tmp_path / "run").exists()


def test_openai_model_key_includes_the_resolved_base_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _matrix(tmp_path, "    model: openai:text-embedding-3-small\n    base_url_env: MY_URL\n")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("MY_URL", "http://server-a:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")  # the planner requires a key before anything runs
    a = build_plan(load_matrix(m), load_data=False).models[0]
    monkeypatch.setenv("MY_URL", "http://server-b:8000/v1")
    b = build_plan(load_matrix(m), load_data=False).models[0]
    assert a.key != b.key and a.revision != b.revision
    assert a.resolved.identity.content == "openai:text-embedding-3-small@http://server-a:8000/v1"


def test_lora_adapter_identity_includes_its_base_model(tmp_path: Path) -> None:
    base = _model_dir(tmp_path / "base", b"base weights v1")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"lora")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 16}))
    ref = ModelReference("path", str(adapter))
    before = model_identity(ref).content
    (base / "model.safetensors").write_bytes(b"base weights v2")  # same adapter, different base
    clear_process_memo()
    after = model_identity(ref).content
    assert before != after and "+base:path:" in after


def test_lora_adapter_on_a_hub_base_uses_its_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    _fake_hub_cache(cache, "org/base-llm", "c" * 40)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base-llm"}))
    assert model_identity(ModelReference("path", str(adapter))).content.endswith(f"+base:hub:org/base-llm@{'c' * 40}")
