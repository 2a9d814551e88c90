"""Offline end to end: examples/generate-offline.yaml with the local SmolLM2-135M backend (CPU)."""

from __future__ import annotations

import importlib.util

import json
import time
from pathlib import Path

import pytest

from tests.helpers import require
import yaml

from generators.commands import generate_file as generate
from generators.output import read_examples
from generators.parsing import parse_output
from generators.taxonomy import TaskType, spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "generate-offline.yaml"


def _config(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    # Resolve the example's relative eval-data path; drop it only where shared/ is absent.
    kept = [str((EXAMPLE.parent / p).resolve()) for p in data["filters"]["contamination"]
            if (EXAMPLE.parent / p).exists()]
    data["filters"]["contamination"] = kept
    data.pop("output", None)
    cfg = tmp_path / "generate-offline.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.mark.slow
def test_offline_smollm2_end_to_end(tmp_path: Path) -> None:
    require(importlib.util.find_spec("xgrammar") is not None, "xgrammar (pip install --no-deps xgrammar apache-tvm-ffi)")
    cfg = _config(tmp_path)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    manifest = generate(cfg, out, progress=False)
    wall = time.perf_counter() - t0
    rows = read_examples(out / "examples.jsonl")
    print(f"\noffline SmolLM2 wall time {wall:.1f}s; kept {manifest.kept}; counts {manifest.counts}; "
          f"rejects {manifest.rejects}; requests {manifest.requests.model_dump()}; tokens {manifest.tokens.total}")

    assert manifest.kept == len(rows) >= 32
    assert {r.task_type for r in rows} == {t.value for t in TaskType}
    assert len({r.language for r in rows}) >= 3
    assert manifest.requests.total == manifest.requests.succeeded + manifest.requests.failed
    assert manifest.cost_usd == 0.0 and manifest.tokens.total > 0
    # every kept example is valid under its task's schema: rebuild the model reply and re-parse it
    for r in rows:
        s = spec(r.task_type)
        reply = json.dumps({s.query_field: r.query, s.positive_field: r.positive, s.negative_field: r.hard_negative})
        assert parse_output(reply, s.schema).value is not None
        assert r.template_id.startswith("compact/") and r.generator_model.startswith("local:")
    assert sum(manifest.counts["task_type"].values()) == manifest.kept
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["kept"] == manifest.kept and "rejects" in on_disk

    # a second run is answered entirely from the response store: no model call, same output
    t1 = time.perf_counter()
    again = generate(cfg, out, progress=False)
    print(f"re-run from store: {time.perf_counter() - t1:.1f}s, new calls {again.requests.new_calls}")
    assert again.requests.new_calls == 0 and again.requests.from_store == manifest.requests.total
    assert read_examples(out / "examples.jsonl") == rows
