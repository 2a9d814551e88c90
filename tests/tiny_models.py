"""Tiny real models for export and evaluation tests: random weights, real architectures, real files.

A Llama of two blocks and 32 dimensions with a word-level fast tokenizer loads in well under a
second, so the export -> evaluate path can be exercised end to end on every kind of base (local
directory, hub snapshot, GGUF file) without a hub or a large model. The GGUF is written with the
``gguf`` package (a byte-level BPE tokenizer, Llama tensors), so transformers' GGUF loader
dequantizes and converts it exactly as it does a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

WORDS = ("the a of and to in is on by for with from that this tides moon gravity short longer sentence about "
         "query instruct given retrieve passages answer what causes vitamin deficiency linked claim study cells").split()
TEXTS = ["Short.", "A somewhat longer sentence about tides and the moon gravity.",
         "Instruct: given a claim retrieve passages\nQuery: what causes tides",
         "vitamin deficiency is linked to " * 30, "the claim", "a study of cells in the moon"]


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", *WORDS, *[f"w{i}" for i in range(40)]])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")


def save_tiny_llama(dest: Path, seed: int = 0) -> Path:
    """A random two-block Llama (saved as a causal LM, as a hub decoder is) and its tokenizer in ``dest``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def _byte_level_alphabet() -> list[str]:
    """GPT-2's 256 byte-level symbols (what a ``gpt2`` GGUF tokenizer's vocabulary is built on)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), ord("\u00ff") + 1)]
    extra = [b for b in range(256) if b not in kept]
    return [chr(c) for c in kept] + [chr(256 + n) for n in range(len(extra))]


def write_tiny_gguf(dest: Path, seed: int = 0, hidden: int = 32, heads: int = 2, ffn: int = 64) -> Path:
    """A one-block Llama GGUF file (f32 tensors) with a byte-level BPE tokenizer of 264 tokens whose
    EOS is also its PAD (``<|im_end|>``, as SmolLM2's): ~40 kB, loads in about a second."""
    import gguf

    merges = ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_byte_level_alphabet(), *[m.replace(" ", "") for m in merges]]
    w = gguf.GGUFWriter(str(dest), "llama")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(1)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(1)
    w.add_rope_dimension_count(hidden // heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    rng = np.random.default_rng(seed)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    kv = hidden // heads
    w.add_tensor("token_embd.weight", rand(len(tokens), hidden))
    for name, shape in (("attn_q", (hidden, hidden)), ("attn_k", (kv, hidden)), ("attn_v", (kv, hidden)),
                        ("attn_output", (hidden, hidden)), ("ffn_gate", (ffn, hidden)), ("ffn_up", (ffn, hidden)),
                        ("ffn_down", (hidden, ffn))):
        w.add_tensor(f"blk.0.{name}.weight", rand(*shape))
    for name in ("blk.0.attn_norm", "blk.0.ffn_norm", "output_norm"):
        w.add_tensor(f"{name}.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dest


def export_adapter(base: Any, out_dir: Path, *, reference: str, seed: int = 1) -> Path:
    """What a LoRA training run exports: the trainer's own ``export_model`` with non-zero adapters.

    The LoRA B matrices start at zero in training; they are drawn at random here so the adapter
    visibly changes every vector (a test that it was applied can then fail).
    """
    from trainers.backbone import add_lora, load_backbone, load_tokenizer
    from trainers.config import LoraSpec
    from trainers.export import export_model

    lora = LoraSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    backbone = add_lora(load_backbone(base), r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                        target_modules=lora.target_modules, config_path=None)
    gen = torch.Generator().manual_seed(seed)
    trainable = {}
    for name, param in backbone.named_parameters():
        if param.requires_grad:
            trainable[f"backbone.{name}"] = torch.randn(param.shape, generator=gen) * 0.3
    return export_model(base=base, tokenizer=load_tokenizer(base, None), trainable=trainable, lora=lora, merge=False,
                        pooling=base.pooling, normalize=True, max_length=64, instructions={"claims": "Given a claim"},
                        use_e5=True, out_dir=out_dir, card={"base_model": reference, "steps": 0})


def reference_vectors(base_path: str, export_dir: Path, texts: list[str], *, revision: str | None = None,
                      adapter: bool = True, max_length: int = 64) -> torch.Tensor:
    """The trainer's own encoder over the UNMERGED peft model (``adapter=False``: the bare base), with
    the export's tokenizer: what evaluation must reproduce."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    from trainers.encoder import TextEncoder

    model = AutoModel.from_pretrained(base_path, revision=revision)
    if adapter:
        model = PeftModel.from_pretrained(model, str(export_dir))
    encoder = TextEncoder(model.eval(), AutoTokenizer.from_pretrained(str(export_dir)), "lasttoken", True).eval()
    with torch.no_grad():
        return encoder(**encoder.tokenize(texts, max_length))
