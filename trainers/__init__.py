"""Contrastive fine-tuning of LLMs (and encoders) into embedders: the E5-mistral recipe.

Usable on its own (``trainers.train.train(load_train_config(path))``) and as ``harness train``.
Modules, in data-flow order: ``config`` (the YAML schema), ``data`` (sources, registry, mixture),
``reference``/``backbone`` (base model, GGUF dense copy, EOS-appending tokenizer, LoRA),
``encoder`` (tokenise + pool), ``loss`` (InfoNCE, cross-process negatives), ``gradcache`` (one
step, full-batch or cached), ``engine`` (plain PyTorch or DeepSpeed), ``train`` (the resumable
loop), ``export`` (a sentence-transformers directory evaluation loads like any other model).
``templates`` and ``pooling`` hold the instruction template and pooling that evaluation imports,
so training and evaluation cannot drift apart. Libraries never import ``harness``.
"""
