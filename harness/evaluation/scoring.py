"""One task scored by mteb's own evaluator: the single ``mteb.evaluate`` call of the harness.

A cell of ``harness run`` (:func:`harness.steps.evaluate.run_evaluate`) and the dev score of a model
in training (:class:`harness.evaluation.dev_scorer.DevScorer`) both score through here, so the two
cannot drift apart: the same evaluator settings, the same batch size handed to the encoder, errors
raised rather than recorded, and nothing read from or written to mteb's own result cache (the
harness keeps results in its step store and vectors in its embedding cache).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.evaluation.tasks import ResolvedTask

if TYPE_CHECKING:
    from mteb.results import TaskResult


def score_task(encoder: Any, rt: ResolvedTask, *, batch_size: int) -> TaskResult:
    """Score ``encoder`` (an mteb encoder: :class:`~harness.evaluation.encoder.CachedEncoder`) on one
    resolved task, its local data loaded first; returns mteb's ``TaskResult``."""
    import mteb

    rt.load()
    result = mteb.evaluate(encoder, [rt.task], cache=None, overwrite_strategy="always", co2_tracker=False,
                           show_progress_bar=False, raise_error=True,
                           encode_kwargs={"batch_size": batch_size, "show_progress_bar": False})
    return result.task_results[0]
