"""Task resolution: an mteb task name (+ optional local data) -> a ready mteb task object.

The task object is always mteb's own class, so metadata, splits, main score and the evaluator are
mteb's. With ``data:`` we only replace where the bytes come from (see :mod:`harness.evaluation.local_data`);
without it, mteb loads from the hub through the very same object.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.evaluation import local_data
from harness.evaluation.task_catalog import suggest
from harness.evaluation.task_registry import get_task
from harness.schema import LoadedMatrix, TaskSpec
from harness.errors import InputError

LOCAL_TYPES = ("Retrieval", "Reranking", "STS", "Classification", "BitextMining")


@dataclass
class ResolvedTask:
    spec: TaskSpec
    task: Any  # mteb AbsTask
    data_dir: Path | None
    subsets: list[str]
    splits: list[str]
    skipped_subsets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what loading changed in the data (e.g. dropped qrels), to report
    _data_fingerprint: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.task.metadata.name

    @property
    def task_type(self) -> str:
        return str(self.task.metadata.type)

    def data_fingerprint(self) -> str:
        """Content hash of the local files this task reads (or the hub dataset revision)."""
        if self._data_fingerprint is None:
            self._data_fingerprint = self._compute_data_fingerprint()
        return self._data_fingerprint

    def _compute_data_fingerprint(self) -> str:
        if self.data_dir is None:
            return f"hub:{self.task.metadata.dataset.get('path')}@{self.task.metadata.dataset.get('revision')}"
        from contentid import file_digest

        # The same value as before contentid (a digest of every byte per file), but memoised per file
        # version: a 9 GB corpus is read once per change, not once per plan.
        h = hashlib.sha256()
        for p in sorted(self.data_dir.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                h.update(p.relative_to(self.data_dir).as_posix().encode() + b"\0")
                h.update(bytes.fromhex(file_digest(p)))
        return h.hexdigest()

    def load(self) -> None:
        """Fill ``task.dataset`` from the local folder (no-op for hub tasks: mteb loads them)."""
        if self.data_dir is None or self.task.data_loaded:
            return
        self.task.dataset = _read_local(self)
        self.task.data_loaded = True

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to run on another process or node) without the local data it loaded: the receiving
        unit reads it again from ``data_dir`` (same bytes: the step key holds their fingerprint)."""
        state = dict(self.__dict__)
        if self.data_dir is not None and getattr(self.task, "data_loaded", False):
            import copy

            task = copy.copy(self.task)
            task.dataset, task.data_loaded = None, False
            state["task"] = task
        return state


def _local_subsets(data_dir: Path, task: Any) -> list[str]:
    ttype = task.metadata.type
    if ttype == "BitextMining":
        return sorted(local_data.bitext_subsets(data_dir))
    if task.metadata.is_multilingual:
        return local_data.subset_folders(data_dir)
    return ["default"]


def subset_dir(rt: ResolvedTask, subset: str) -> Path:
    assert rt.data_dir is not None
    return rt.data_dir if subset == "default" and not rt.task.metadata.is_multilingual else rt.data_dir / subset


def _read_local(rt: ResolvedTask) -> dict[str, Any]:
    from datasets import DatasetDict

    ttype = rt.task_type
    dataset: dict[str, Any] = {}
    if ttype == "BitextMining":
        files = local_data.bitext_subsets(rt.data_dir)  # type: ignore[arg-type]
        for subset in rt.subsets:
            dataset[subset] = DatasetDict({split: local_data.read_bitext_file(files[subset]) for split in rt.splits})
        return dataset
    for subset in rt.subsets:
        folder = subset_dir(rt, subset)
        if ttype in ("Retrieval", "Reranking"):
            dataset[subset] = {}
            for split in rt.splits:
                dataset[subset][split], dropped = local_data.read_retrieval_split(
                    folder, split, drop_unknown_qrels=rt.spec.unknown_qrels == "drop")
                if dropped:
                    rt.notes.append(f"{rt.name} {subset}/{split}: dropped {dropped} qrels line(s) naming a document or "
                                    f"query absent from {folder} (unknown_qrels: drop)")
        elif ttype == "STS":
            dataset[subset] = DatasetDict({split: local_data.read_sts_split(folder, split) for split in rt.splits})
        elif ttype == "Classification":
            needed = list(dict.fromkeys([*rt.splits, rt.task.train_split]))
            dataset[subset] = DatasetDict({split: local_data.read_classification_split(folder, split) for split in needed})
    return dataset


def resolve_task(spec: TaskSpec, loaded: LoadedMatrix, index: int) -> ResolvedTask:
    """Validate one task entry of a matrix against mteb's registry and the local folder; load nothing yet."""
    return resolve_task_at(spec, source=loaded.path, where=f"tasks[{index}] (name: {spec.name})")


def resolve_task_at(spec: TaskSpec, *, source: Path, where: str) -> ResolvedTask:
    """:func:`resolve_task` for an entry anywhere in a file (a recipe's ``eval_task`` too): relative
    ``data:`` resolves against ``source``'s folder, and errors name ``source`` and ``where``."""
    src = source
    try:
        probe = get_task(spec.name)
    except (KeyError, ValueError):
        raise InputError(src, f"{where}.name", f"unknown mteb task {spec.name!r}", suggest(spec.name)) from None
    meta = probe.metadata
    all_subsets = list(probe.hf_subsets)
    if spec.subsets:
        unknown = [s for s in spec.subsets if s not in all_subsets]
        if unknown:
            raise InputError(src, f"{where}.subsets", f"{', '.join(map(repr, unknown))} not a subset of {meta.name}",
                             f"choose from: {', '.join(all_subsets[:40])}{' ...' if len(all_subsets) > 40 else ''}")
    if spec.splits:
        unknown = [s for s in spec.splits if s not in meta.eval_splits]
        if unknown:
            raise InputError(src, f"{where}.splits", f"{', '.join(map(repr, unknown))} not an evaluation split of {meta.name}",
                             f"choose from: {', '.join(meta.eval_splits)}")
    splits = list(spec.splits or meta.eval_splits)
    data_dir: Path | None = None
    skipped: list[str] = []
    if spec.data is not None:
        data_dir = spec.data.expanduser()
        data_dir = data_dir if data_dir.is_absolute() else (source.parent / data_dir).resolve()
        if not data_dir.is_dir():
            raise InputError(src, f"{where}.data", f"data folder {data_dir} does not exist",
                             "fix the path (relative to the matrix file) or remove 'data:' to load from the hub")
        if meta.type not in LOCAL_TYPES:
            raise InputError(src, f"{where}.data", f"local data for {meta.type} tasks is not supported",
                             f"remove 'data:' to load {meta.name} from the hub (local layouts exist for {', '.join(LOCAL_TYPES)})")
        local = _local_subsets(data_dir, probe)
        if spec.subsets:
            absent = [s for s in spec.subsets if s not in local]
            if absent:
                raise InputError(src, f"{where}.subsets", f"{', '.join(map(repr, absent))} not found in {data_dir}",
                                 f"add the sub-folder/file for it or drop it; found: {', '.join(local) or 'nothing'}")
            subsets = list(spec.subsets)
        else:
            subsets = [s for s in all_subsets if s in local]
            skipped = [s for s in all_subsets if s not in local]
            if not subsets:
                raise InputError(src, f"{where}.data", f"no subset of {meta.name} found in {data_dir}",
                                 f"use one sub-folder (or '<pair>.jsonl' for bitext) per subset named like: {', '.join(all_subsets[:8])}")
        if meta.type != "BitextMining":
            for subset in subsets:
                folder = data_dir / subset if meta.is_multilingual else data_dir
                have = local_data.available_splits(folder, meta.type)
                missing = [s for s in splits if s not in have]
                if missing:
                    layout = "qrels/<split>.tsv" if meta.type in ("Retrieval", "Reranking") else "<split>.jsonl"
                    raise InputError(src, f"{where}.data", f"split(s) {', '.join(missing)} missing in {folder}",
                                     f"add {layout} for them or restrict with 'splits:' to {', '.join(sorted(have)) or 'existing splits'}")
    else:
        subsets = list(spec.subsets or all_subsets)
    task = get_task(spec.name, eval_splits=splits, hf_subsets=subsets)
    return ResolvedTask(spec=spec, task=task, data_dir=data_dir, subsets=subsets, splits=splits, skipped_subsets=skipped)
