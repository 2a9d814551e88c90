"""Evaluation-first benchmark harness for LLM-based text embedders.

The package is the product's front (CLI) and orchestrator: matrix schema, planner, artifact
store, executor and evaluation (tasks, models, embedding cache, results). Scores always come
from mteb's own evaluators; this package only decides *what* to run and makes sure nothing is
computed twice.
"""

__version__ = "0.1.0"
