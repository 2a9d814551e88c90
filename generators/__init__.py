"""Synthetic training data for text embedders, after Wang et al. 2024 (E5-mistral).

An LLM brainstorms task definitions, then writes one training example per sampled task; outputs are
parsed strictly, filtered (language, duplicates, eval-set contamination) and written as JSONL with a
manifest. Usable on its own (`generators.commands.generate`) and as the harness's `generate` step;
this package never imports `harness`.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
