"""What a ``data:`` spec trains on, by content: each source's settings with its files replaced by their digests.

A training's identity must change when a byte of its data changes and must not change when a data
folder moves (a moved folder must resume, not retrain). So a source is named here by the files
it is read from — exactly those: a BEIR source by its corpus, queries and ``qrels/<split>.tsv``
(another split's qrels change nothing), a synthetic source by its ``examples.jsonl``, a pairs
source or a hub source's local ``data_files`` by their bytes — plus every setting that changes
what is read or how it is mixed (name, weight, split, instruction, mining window, max_examples).
A hub dataset without local files is named by its id, config, split and revision: pin
``revision`` to a commit for an identity that follows the data. Digests are
``contentid.file_digest`` (memoised), so naming a large corpus again costs a ``stat``.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from contentid import file_digest
from trainers.data.beir import split_files
from trainers.data.jsonl import require_file
from trainers.data.mixture import resolve_path, source_entries
from trainers.data.spec import BeirSource, DataSpec, HubSource, PairsSource, RegistrySource, SyntheticSource
from trainers.data.registry import SYNTHETIC
from trainers.data.synthetic import resolve_examples_file
from trainers.errors import TrainInputError


def _data_files(pattern: str, where: str) -> list[Path]:
    path = Path(pattern)
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    if not matches:
        raise TrainInputError(where, "data_files", f"{pattern} matches no file", "fix the path (relative to the config file)")
    return matches


def source_files(src: Any, base_dir: Path, where: str) -> list[Path]:
    """Every local file ``src`` is read from, in a fixed order (empty for a hub dataset read from the hub)."""
    if isinstance(src, SyntheticSource):
        return [resolve_examples_file(resolve_path(base_dir, src.path))]
    if isinstance(src, PairsSource):
        return [require_file(resolve_path(base_dir, src.path), "pairs file",
                             "point `path` at a JSONL file of {query, positive, negatives} rows")]
    if isinstance(src, BeirSource):
        return list(split_files(resolve_path(base_dir, src.path), src.split))
    if isinstance(src, HubSource):
        patterns = [] if src.data_files is None else [src.data_files] if isinstance(src.data_files, str) else src.data_files
        return [f for p in patterns for f in _data_files(str(resolve_path(base_dir, p)), where)]
    assert isinstance(src, RegistrySource)
    if src.path is None:
        return []
    path = resolve_path(base_dir, src.path)
    if src.source == SYNTHETIC:
        return [resolve_examples_file(path)]
    if path.is_dir():
        return list(split_files(path, src.split))
    return [require_file(path, f"local copy of {src.source!r}", "fix the path (relative to the config file)")]


def _mines(src: Any, base_dir: Path) -> bool:
    """Whether the source's negatives are mined (then the mining model shapes the data too)."""
    if isinstance(src, BeirSource):
        return src.negatives_per_query > 0
    if isinstance(src, RegistrySource) and src.path is not None and src.source != SYNTHETIC:
        return src.negatives_per_query > 0 and resolve_path(base_dir, src.path).is_dir()
    return False


def data_content(spec: DataSpec, base_dir: Path, config_file: Path | None = None) -> tuple[list[dict[str, Any]], bool]:
    """(one JSON-able entry per source, whether any source mines negatives); no path appears in it."""
    entries: list[dict[str, Any]] = []
    mines = False
    for entry in source_entries(spec, Path(base_dir), config_file):
        settings = entry.spec.model_dump(mode="json", exclude={"path", "data_files", "name", "weight"})
        files = [file_digest(f) for f in source_files(entry.spec, Path(base_dir), entry.where)]
        entries.append({"name": entry.name, "weight": entry.weight, "settings": settings, "files": files})
        mines = mines or _mines(entry.spec, Path(base_dir))
    return entries, mines
