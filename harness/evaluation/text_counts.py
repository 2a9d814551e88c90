"""How much text a task encodes, read offline: what an evaluation estimate is made of.

Local data is counted from its files (lines and bytes; a JSON line's keys included, so sizes are a
slight overestimate); hub tasks from the descriptive statistics mteb ships with every task (distinct
texts per split and subset). Classification is the one task type whose evaluator also embeds
training examples: only its undersampled training sets, at most n_experiments × samples_per_label ×
labels of the train split.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

TextGroups = list[tuple[float, float]]  # (distinct texts, mean characters) per text column


def count_lines(path: Path) -> tuple[int, int]:
    """(non-empty lines, uncompressed bytes) of a text file, .gz read through."""
    lines = size = 0
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for line in fh:
            size += len(line)
            lines += bool(line.strip())
    return lines, size


def _judged_queries(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with path.open(encoding="utf-8") as fh:
        rows = [line.split() for line in fh]
    return {r[0] for r in rows if len(r) >= 3 and r[0] not in ("query-id", "qid", "query_id")}


def _stat_groups(split_stats: dict[str, Any]) -> TextGroups:
    """(distinct texts, mean characters) of each text column in one split's mteb statistics."""
    groups = []
    for key, value in split_stats.items():
        if not key.endswith("_statistics") or not isinstance(value, dict) or "total_text_length" not in value:
            continue
        n = value.get("unique_texts") or split_stats.get("num_samples") or 0
        mean = value.get("average_text_length") or (value["total_text_length"] / n if n else 0.0)
        groups.append((float(n), float(mean)))
    return groups


def _classifier_training(task: Any, split_stats: dict[str, Any], groups: TextGroups) -> TextGroups:
    labels = (split_stats.get("label_statistics") or {}).get("unique_labels")
    n = split_stats.get("num_samples")
    if not labels or not n:
        return groups
    cap = getattr(task, "n_experiments", 10) * getattr(task, "samples_per_label", 8) * labels
    return [(min(count, count * cap / n), mean) for count, mean in groups]


def _stats_groups(task: Any, splits: list[str], subsets: list[str]) -> TextGroups | None:
    stats = task.metadata.descriptive_stats
    if not stats:
        return None
    splits = list(splits)
    train = getattr(task, "train_split", None)
    classifier = str(task.metadata.type) == "Classification" and train and train in stats and train not in splits
    if classifier:
        splits.append(train)
    groups: TextGroups = []
    for split in splits:
        s = stats.get(split)
        if not s:
            return None
        per_subset = s.get("hf_subset_descriptive_stats") or {}
        chosen = ([per_subset[sub] for sub in subsets]
                  if per_subset and set(subsets) <= set(per_subset) and set(subsets) != set(per_subset) else [s])
        for part in chosen:
            found = _stat_groups(part)
            groups += _classifier_training(task, part, found) if classifier and split == train else found
    return groups


def _hub_profile(rt: Any) -> tuple[TextGroups, str] | None:
    groups = _stats_groups(rt.task, rt.splits, rt.subsets)
    if groups is not None:
        return groups, "mteb descriptive_stats (distinct texts)"
    subtasks = getattr(rt.task.metadata, "tasks", None) or []  # an aggregate task (e.g. CQADupstackRetrieval)
    if not subtasks:
        return None
    groups = []
    for sub in subtasks:
        found = _stats_groups(sub, [s for s in sub.metadata.eval_splits if s in rt.splits] or list(sub.metadata.eval_splits),
                              list(sub.hf_subsets))
        if found is None:
            return None
        groups += found
    return groups, f"mteb descriptive_stats of its {len(subtasks)} subtasks (distinct texts)"


def _local_profile(rt: Any) -> tuple[TextGroups, str]:
    from harness.evaluation import local_data
    from harness.evaluation.tasks import subset_dir

    groups: TextGroups = []

    def add(path: Path | None, texts_per_line: int = 1) -> None:
        if path is None or not path.is_file():
            return
        lines, size = count_lines(path)
        if lines:
            groups.append((float(lines * texts_per_line), size / (lines * texts_per_line)))

    ttype = rt.task_type
    if ttype == "BitextMining":
        files = local_data.bitext_subsets(rt.data_dir)
        for sub in rt.subsets:
            add(files.get(sub), 2)
        return groups, "local files (line counts; sizes include JSON keys)"
    for sub in rt.subsets:
        folder = subset_dir(rt, sub)
        if ttype in ("Retrieval", "Reranking"):
            add(local_data.find_file(folder, "corpus"))
            queries = local_data.find_file(folder, "queries")
            if queries is not None:  # the queries judged in the evaluated splits (the file may hold train queries too)
                lines, size = count_lines(queries)
                judged = set().union(*(_judged_queries(folder / "qrels" / f"{split}.tsv") for split in rt.splits))
                if lines and judged:
                    groups.append((float(min(len(judged), lines)), size / lines))
        elif ttype == "STS":
            for split in rt.splits:
                add(local_data.find_file(folder, split), 2)
        elif ttype == "Classification":
            for split in dict.fromkeys([*rt.splits, rt.task.train_split]):
                add(local_data.find_file(folder, split))
    return groups, "local files (line counts; sizes include JSON keys)"


_PROFILES: dict[tuple[Any, ...], tuple[TextGroups, str] | None] = {}  # by content: safe across plans


def task_profile(rt: Any) -> tuple[TextGroups, str] | None:
    """(distinct texts, mean characters) groups of what a task encodes, and where the numbers come from."""
    key = (rt.name, tuple(rt.subsets), tuple(rt.splits), rt.data_fingerprint() if rt.data_dir is not None else "hub")
    if key not in _PROFILES:
        _PROFILES[key] = _local_profile(rt) if rt.data_dir is not None else _hub_profile(rt)
    return _PROFILES[key]
