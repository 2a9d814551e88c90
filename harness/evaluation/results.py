"""Writing results in the MTEB results-repository layout, plus per-query scores and provenance.

``<output>/results/<model>/<revision>/<Task>.json`` and ``model_meta.json`` are what mteb's own
tools and the public leaderboard read. Files are strict JSON (mteb may produce NaN, which is not
JSON), written atomically. Per-query scores (retrieval: the main metric per query, taken from
mteb's own pytrec_eval output) live in ``per_query/<Task>.json`` beside them so that gates can
run paired significance tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from atomicio import atomic_write_json, strict_json_value


def model_dir_name(model_name: str) -> str:
    """The results-repository folder name for a model (``org/name`` -> ``org__name``)."""
    return model_name.replace("/", "__").replace(" ", "_")


def results_dir(output: Path, model_name: str, revision: str) -> Path:
    return output / "results" / model_dir_name(model_name) / revision


def pytrec_key(main_score: str) -> str | None:
    """mteb metric name -> the per-query key pytrec_eval reports it under."""
    m = re.fullmatch(r"(ndcg|map|recall|precision)_at_(\d+)", main_score)
    if not m:
        return None
    prefix = {"ndcg": "ndcg_cut_", "map": "map_cut_", "recall": "recall_", "precision": "P_"}[m.group(1)]
    return f"{prefix}{m.group(2)}"


class PerQueryRecorder:
    """Captures mteb's per-query retrieval scores by wrapping the task's ``task_specific_scores`` hook.

    mteb computes per-query metrics with pytrec_eval and passes them to this hook before averaging;
    wrapping the instance method keeps mteb's metric code as the only metric code.
    """

    def __init__(self, task: Any) -> None:
        self.main_score = str(task.metadata.main_score)
        self.key = pytrec_key(self.main_score)
        self.scores: dict[str, dict[str, dict[str, float]]] = {}
        if self.key is None or not hasattr(task, "task_specific_scores"):
            return
        original = task.task_specific_scores

        def hook(all_scores: dict[str, dict[str, float]], *args: Any, hf_split: str, hf_subset: str, **kw: Any) -> Any:
            assert self.key is not None
            self.scores.setdefault(hf_split, {})[hf_subset] = {
                qid: float(vals[self.key]) for qid, vals in all_scores.items() if self.key in vals
            }
            return original(all_scores, *args, hf_split=hf_split, hf_subset=hf_subset, **kw)

        task.task_specific_scores = hook

    def to_json(self, task_name: str) -> dict[str, Any] | None:
        if not self.scores:
            return None
        return {"task_name": task_name, "main_score": self.main_score, "pytrec_eval_key": self.key, "scores": self.scores}


def task_result_json(task_result: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    """mteb's own serialisation (as ``TaskResult.to_disk``), with our provenance as an extra key."""
    obj = task_result.model_dump()
    obj["date"] = task_result.date.timestamp() if task_result.date else None
    task_result._round_scores(obj["scores"], 6)
    obj["harness_provenance"] = provenance
    return obj


def ensure_model_meta(folder: Path, model_meta: Any) -> Path:
    """Write ``model_meta.json`` only when it is missing or says something else.

    The file is shared by every task of a model revision, so it is not any one step's output:
    steps do not list it in their manifests (a change to it must not invalidate its siblings),
    and an unchanged file is not rewritten by each cell or by a concurrent run.
    """
    meta_path = folder / "model_meta.json"
    text = json.dumps(strict_json_value(model_meta.to_dict()), sort_keys=True)
    try:
        current = json.dumps(json.loads(meta_path.read_text(encoding="utf-8")), sort_keys=True)
    except (OSError, ValueError):
        current = None
    if current != text:
        atomic_write_json(meta_path, model_meta.to_dict())
    return meta_path


def write_task_result(folder: Path, task_result: Any, provenance: dict[str, Any], model_meta: Any,
                      per_query: dict[str, Any] | None) -> list[Path]:
    """Write per-query scores and model meta first and the task file last.

    Returns the step's own outputs (for its manifest): the task file and per-query scores, not the
    shared ``model_meta.json``.
    """
    written: list[Path] = []
    if per_query is not None:
        pq = folder / "per_query" / f"{task_result.task_name}.json"
        atomic_write_json(pq, per_query)
        written.append(pq)
    ensure_model_meta(folder, model_meta)
    path = folder / f"{task_result.task_name}.json"
    atomic_write_json(path, task_result_json(task_result, provenance))
    written.append(path)
    return written


def main_scores(task_result: Any) -> dict[str, dict[str, float | None]]:
    """``{split: {subset: main_score}}`` for summaries."""
    return {split: {s["hf_subset"]: s.get("main_score") for s in rows} for split, rows in task_result.scores.items()}
