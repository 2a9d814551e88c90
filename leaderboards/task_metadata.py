"""Task type and benchmark membership, taken from mteb's own metadata.

The category a task is averaged under must be the one MTEB uses, or our averages would not be
comparable with the public leaderboard; so mteb's ``TaskMetadata.type`` wins, and the type stored
with a result (reference data, old result files) is only a fallback for tasks this mteb version
does not know. mteb is imported lazily: importing it takes seconds and creates a cache folder.
"""

from __future__ import annotations

from functools import lru_cache

# The MTEB(eng) categories, in the leaderboard's column order; other task types follow them.
MTEB_CATEGORIES: tuple[str, ...] = (
    "Classification",
    "Clustering",
    "PairClassification",
    "Reranking",
    "Retrieval",
    "STS",
    "Summarization",
)

OVERALL = "Overall"  # the average over every task of a report, shown after the categories

# Used only when mteb cannot list the BEIR benchmark (it normally can, offline).
_BEIR_FALLBACK: frozenset[str] = frozenset(
    {
        "TRECCOVID", "NFCorpus", "NQ", "HotpotQA", "FiQA2018", "ArguAna", "Touche2020",
        "CQADupstackRetrieval", "QuoraRetrieval", "DBPedia", "SCIDOCS", "FEVER", "ClimateFEVER",
        "SciFact", "MSMARCO",
    }
)


@lru_cache(maxsize=None)
def _mteb_type(task: str) -> str | None:
    try:
        import mteb

        return str(mteb.get_task(task).metadata.type)
    except Exception:  # unknown to this mteb version, or mteb unusable: fall back
        return None


def task_type(task: str, fallback: str | None = None) -> str:
    """MTEB's type of ``task``; ``fallback`` (the stored type) when mteb does not know the task."""
    return _mteb_type(task) or fallback or "Unknown"


def category_order(categories: set[str]) -> list[str]:
    """MTEB categories first in leaderboard order, then any other task type alphabetically."""
    rest = sorted(c for c in categories if c not in MTEB_CATEGORIES)
    return [c for c in MTEB_CATEGORIES if c in categories] + rest


@lru_cache(maxsize=1)
def beir_tasks() -> frozenset[str]:
    try:
        import mteb

        return frozenset(t.metadata.name for t in mteb.get_benchmark("BEIR").tasks)
    except Exception:
        return _BEIR_FALLBACK


def is_beir(task: str) -> bool:
    """BEIR datasets, counting CQADupStack's per-forum tasks, which MTEB scores one by one."""
    return task in beir_tasks() or (task.startswith("CQADupstack") and task.endswith("Retrieval"))
