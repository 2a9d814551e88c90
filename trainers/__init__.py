"""Contrastive fine-tuning of decoder LLMs into embedders (the E5 recipe). Not implemented yet.

Planned scope (see ../shared/ARCHITECTURE.md): data mixtures with per-source instructions, LoRA,
last-token pooling with an explicit EOS, InfoNCE with in-batch and hard negatives (temperature
0.02), GradCache, DeepSpeed ZeRO-3 / torchrun, and export of a sentence-transformers directory.
Libraries never import ``harness``, so when this package is built the E5 template now in
``harness/instructions.py`` moves here and ``harness`` imports it from here: one template for
training and evaluation. No issue asks for this package yet.
"""
