"""The materialised training data: examples per source, weights, and the batch schedule.

Batches are drawn from one source at a time (in-batch negatives then come from the same task,
as in the paper, and classification examples never meet another task's labels). Batch ``k`` is a
pure function of (seed, k, batch_size, data):

- the source of every step comes from a fixed stream of uniforms (blocks of ``_BLOCK`` steps, each
  seeded by (seed, block)), so how many batches source ``s`` served before step ``k`` is computable
  without replaying the run;
- within a source, its ``j``-th batch is slice ``j mod n_batches`` of epoch ``j div n_batches``'s
  seeded permutation (the incomplete tail of each epoch is dropped, so no example repeats within an
  epoch or within a batch).

So a run killed at step ``k`` and resumed at ``k`` sees exactly the batches an uninterrupted run
would. ``save``/``load`` keep mined negatives so a resume never re-mines, and ``fingerprint`` is the
content hash recorded in the model's provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from atomicio import atomic_write_text
from trainers.data.beir import load_beir
from trainers.data.hub import HubColumns, load_hub, pick_instruction
from trainers.data.jsonl import iter_jsonl, require_file, validate_row
from trainers.data.pairs import load_pairs
from trainers.data.registry import REGISTRY, SYNTHETIC, BeirLoader, HubLoader, closest, get_entry, get_preset
from trainers.data.spec import BeirSource, DataSpec, HubSource, PairsSource, RegistrySource, SyntheticSource
from trainers.data.synthetic import load_synthetic
from trainers.errors import TrainInputError
from trainers.examples import TrainExample

Encoder = Callable[[list[str], bool], np.ndarray]

FORMAT = "e5-harness-mixture"
VERSION = 1
_BLOCK = 4096
_CHOICE_SALT = 0x5EED_C401
_PERM_SALT = 0x5EED_9E57


def _name_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: StrictStr
    version: int
    weights: dict[str, float]
    counts: dict[str, int]
    fingerprint: StrictStr


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: StrictStr
    positive: StrictStr
    negatives: list[StrictStr]
    instruction: StrictStr
    source: StrictStr
    in_batch_negatives: StrictBool


class Mixture:
    """Examples per source plus sampling weights; deterministic, resumable batches."""

    def __init__(self, sources: dict[str, list[TrainExample]], weights: dict[str, float]) -> None:
        if not sources:
            raise ValueError("a mixture needs at least one source")
        if set(sources) != set(weights):
            raise ValueError(f"sources {sorted(sources)} and weights {sorted(weights)} name different sources")
        for name, examples in sources.items():
            if not examples:
                raise TrainInputError(None, f"sources.{name}", "the source has no examples", "check its path/split, or drop it")
            if weights[name] <= 0:
                raise ValueError(f"weight of {name!r} must be > 0")
            wrong = next((e.source for e in examples if e.source != name), None)
            if wrong is not None:
                raise ValueError(f"an example in source {name!r} says source={wrong!r}; they must match")
        self.sources: dict[str, list[TrainExample]] = {n: list(sources[n]) for n in sorted(sources)}
        self.weights: dict[str, float] = {n: float(weights[n]) for n in sorted(weights)}
        self._names = list(self.sources)
        w = np.array([self.weights[n] for n in self._names], dtype=np.float64)
        self._cdf = np.cumsum(w / w.sum())
        self._cdf[-1] = 1.0
        self._block_starts: dict[int, list[np.ndarray]] = {}  # seed -> per-source counts before each block
        self._perms: dict[tuple[str, int, int], np.ndarray] = {}

    # -- introspection -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Examples per source."""
        return {n: len(ex) for n, ex in self.sources.items()}

    def fingerprint(self) -> str:
        """SHA-256 of the materialised data and weights (order-sensitive within a source)."""
        h = hashlib.sha256()
        for name in self._names:
            h.update(json.dumps([name, self.weights[name]]).encode("utf-8") + b"\n")
            for ex in self.sources[name]:
                h.update(json.dumps(ex.to_json(), ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
        return h.hexdigest()

    # -- batches -------------------------------------------------------------------------------
    def check_batch_size(self, batch_size: int) -> None:
        """Every source must fill one batch without repeating an example; call once before training."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        for name, examples in self.sources.items():
            if len(examples) < batch_size:
                raise TrainInputError(
                    None, f"sources.{name}", f"has {len(examples)} examples, fewer than one batch of {batch_size}",
                    "lower the batch size, raise max_examples, or drop this source",
                )

    def check_negatives(self, per_source: dict[str, int], config_file: Path | str | None = None) -> None:
        """Every batch of a source uses exactly its ``per_source`` hard negatives per example, so every
        example must have them; and a source whose loss cannot move (no hard and no in-batch
        negatives) is refused."""
        for name, examples in self.sources.items():
            hard_negatives = per_source[name]
            feasible = min(len(e.negatives) for e in examples)
            short = [e for e in examples if len(e.negatives) < hard_negatives]
            if short:
                raise TrainInputError(
                    config_file, "hard_negatives",
                    f"{len(short)} of {len(examples)} examples of source {name!r} have fewer than {hard_negatives} "
                    f"hard negatives (the fewest: {min(len(e.negatives) for e in short)})",
                    f"lower hard_negatives to {feasible} (what every example has), or give those examples more: mine more "
                    "(negatives_per_query, with mine_depth >= mine_skip_top + negatives_per_query, for a BEIR source; "
                    "docs/training-data.md) or add negatives to the rows")
            if hard_negatives == 0 and not any(e.in_batch_negatives for e in examples):
                raise TrainInputError(
                    config_file, "hard_negatives",
                    f"source {name!r} has only examples without in-batch negatives (classification-derived) and "
                    "hard_negatives is 0: each query would see only its positive, so the loss is constant and nothing trains",
                    "set hard_negatives to 1 or more")

    def _choices(self, seed: int, block: int) -> np.ndarray:
        u = np.random.default_rng([seed, _CHOICE_SALT, block]).random(_BLOCK)
        return np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._names) - 1)

    def _counts_before_block(self, seed: int, block: int) -> np.ndarray:
        starts = self._block_starts.setdefault(seed, [np.zeros(len(self._names), dtype=np.int64)])
        while len(starts) <= block:
            b = len(starts) - 1
            starts.append(starts[b] + np.bincount(self._choices(seed, b), minlength=len(self._names)))
        return starts[block]

    def _perm(self, name: str, seed: int, epoch: int) -> np.ndarray:
        key = (name, seed, epoch)
        perm = self._perms.get(key)
        if perm is None:
            if len(self._perms) > 64:
                self._perms.clear()
            perm = np.random.default_rng([seed, _PERM_SALT, _name_key(name), epoch]).permutation(len(self.sources[name]))
            self._perms[key] = perm
        return perm

    def source_of(self, step: int, seed: int) -> str:
        """Which source serves batch ``step`` (independent of batch size)."""
        block, off = divmod(step, _BLOCK)
        return self._names[int(self._choices(seed, block)[off])]

    def batch(self, step: int, batch_size: int, seed: int) -> tuple[str, list[TrainExample]]:
        """Batch ``step``: (source name, ``batch_size`` distinct examples of that source)."""
        if step < 0 or seed < 0:
            raise ValueError(f"step and seed must be >= 0 (got {step}, {seed})")
        self.check_batch_size(batch_size)
        block, off = divmod(step, _BLOCK)
        choices = self._choices(seed, block)
        s = int(choices[off])
        name = self._names[s]
        ordinal = int(self._counts_before_block(seed, block)[s]) + int(np.count_nonzero(choices[:off] == s))
        n = len(self.sources[name])
        per_epoch = n // batch_size
        epoch, slot = divmod(ordinal, per_epoch)
        idx = self._perm(name, seed, epoch)[slot * batch_size : (slot + 1) * batch_size]
        examples = self.sources[name]
        return name, [examples[int(i)] for i in idx]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write JSONL atomically: a header line, then one example per line (sources in name order)."""
        header = {"format": FORMAT, "version": VERSION, "weights": self.weights, "counts": self.counts(),
                  "fingerprint": self.fingerprint()}
        lines = [json.dumps(header, ensure_ascii=False)]
        for name in self._names:
            lines.extend(json.dumps(ex.to_json(), ensure_ascii=False) for ex in self.sources[name])
        atomic_write_text(Path(path), "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Mixture":
        """Read a saved mixture; the recorded fingerprint must match the content read."""
        path = require_file(Path(path), "mixture file", "build the mixture first (build_mixture(...).save(path))")
        fix = "the file is not a mixture written by Mixture.save; rebuild it"
        header: _Header | None = None
        sources: dict[str, list[TrainExample]] = {}
        for line, obj in iter_jsonl(path):
            if header is None:
                header = validate_row(_Header, obj, path, line, fix)
                if header.format != FORMAT or header.version != VERSION:
                    raise TrainInputError(path, "format", f"format {header.format!r} v{header.version}", fix, line=line)
                continue
            row: _Line = validate_row(_Line, obj, path, line, fix)
            if row.source not in header.weights:
                raise TrainInputError(path, "source", f"source {row.source!r} has no weight in the header", fix, line=line)
            sources.setdefault(row.source, []).append(TrainExample.from_json(row.model_dump()))
        if header is None:
            raise TrainInputError(path, None, "empty mixture file", fix)
        if {n: len(v) for n, v in sources.items()} != header.counts:
            raise TrainInputError(path, "counts", "example counts differ from the header (truncated or edited file)", fix)
        mixture = cls(sources, header.weights)
        if mixture.fingerprint() != header.fingerprint:
            raise TrainInputError(path, "fingerprint", "content does not match the recorded fingerprint (edited file)", fix)
        return mixture


# -- building from a DataSpec -------------------------------------------------------------------

def resolve_path(base_dir: Path, path: str) -> Path:
    """A data path as written in a config (``~`` expanded, relative to the config's folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def _local_registry(name: str, path: Path, src: RegistrySource, encode: Encoder | None, seed: int,
                    instructions: tuple[str, ...]) -> list[TrainExample]:
    """A registry source from a local copy: BEIR folder, pairs JSONL, or a json/parquet file in the hub shape."""
    entry = REGISTRY[name]
    instr = src.instruction if src.instruction is not None else (instructions[0] if len(instructions) == 1 else None)
    if path.is_dir():
        if not any((path / f).is_file() for f in ("corpus.jsonl", "corpus.jsonl.gz")):
            raise TrainInputError(path, "path", f"local copy of {name!r} is a folder without corpus.jsonl[.gz]",
                                  "point at a BEIR-layout folder, a pairs .jsonl, or a .json/.parquet file with the hub columns")
        examples = load_beir(path, encode=encode, split=src.split, source=name, instruction=instr,
                             negatives_per_query=src.negatives_per_query, mine_skip_top=src.mine_skip_top,
                             mine_depth=src.mine_depth, seed=seed, max_examples=src.max_examples)
    elif path.suffix in (".parquet", ".json") and isinstance(entry.loader, HubLoader):
        examples = load_hub("parquet" if path.suffix == ".parquet" else "json", columns=HubColumns(**entry.loader.columns),
                            data_files=str(path), source=name, instruction=src.instruction or instructions,
                            max_examples=src.max_examples, where=str(path))
        return examples
    else:
        examples = load_pairs(path, source=name, instruction=instr, max_examples=src.max_examples)
    if instr is None:  # several paper instructions: assign one per example, stably
        examples = [TrainExample(e.query, e.positive, e.negatives, e.instruction or pick_instruction(instructions, e.query),
                                 e.source, e.in_batch_negatives) for e in examples]
    return examples


def _load_registry(src: RegistrySource, base_dir: Path, encode: Encoder | None, seed: int, where: str) -> list[TrainExample]:
    entry = get_entry(src.source, where)
    if entry.name == SYNTHETIC:
        if src.path is None:
            raise TrainInputError(where, "paths.synthetic", "the synthetic source needs the generator's output",
                                  "add `paths: {synthetic: <generator output dir or examples.jsonl>}` (relative to the config)")
        return load_synthetic(resolve_path(base_dir, src.path), source=SYNTHETIC, instruction=src.instruction,
                              max_examples=src.max_examples)
    if src.path is not None:
        return _local_registry(entry.name, resolve_path(base_dir, src.path), src, encode, seed, entry.instructions)
    loader = entry.loader
    if isinstance(loader, BeirLoader):
        raise TrainInputError(where, f"paths.{entry.name}", f"{entry.title} has no ready-made hub copy; it is read from a local folder",
                              f"prepare {loader.how} and add `paths: {{{entry.name}: <folder>}}`")
    assert isinstance(loader, HubLoader)
    return load_hub(loader.dataset, config=loader.config, split=loader.split, columns=HubColumns(**loader.columns),
                    source=entry.name, instruction=src.instruction or entry.instructions,
                    max_examples=src.max_examples, where=f"{where} (registry source {entry.name!r})")


def default_name(src: Any) -> str:
    if isinstance(src, SyntheticSource):
        return SYNTHETIC
    if isinstance(src, RegistrySource):
        return src.source
    if isinstance(src, HubSource):
        return src.dataset if src.data_files is None else Path(str(src.data_files if isinstance(src.data_files, str) else src.data_files[0])).stem
    return Path(src.path).name.removesuffix(".gz").removesuffix(".jsonl")


def preset_sources(spec: DataSpec, where: str) -> list[RegistrySource]:
    names = get_preset(spec.preset or "", where)
    for key, table in (("paths", spec.paths), ("weights", spec.weights)):
        for name in table:
            if name not in names:
                raise TrainInputError(where, f"{key}.{name}", f"{name!r} is not a source of preset {spec.preset!r}",
                                      closest(name, names))
    # A preset's sources have no per-source settings, so a source that ships without hard negatives
    # (eli5, nq, squad: pairs only) trains on in-batch negatives, as the registry documents for it
    # (and training.json records per source); a local copy (``paths:``) is mined, so it keeps the recipe's.
    return [RegistrySource(kind="registry", source=n, path=spec.paths.get(n), weight=spec.weights.get(n),
                           hard_negatives=0 if spec.paths.get(n) is None and not _ships_negatives(n) else None)
            for n in names]


def _ships_negatives(source: str) -> bool:
    loader = REGISTRY[source].loader if source in REGISTRY else None
    return not isinstance(loader, HubLoader) or bool(loader.columns.get("negatives"))


@dataclass(frozen=True)
class SourceEntry:
    """One source of a data spec as the mixture will hold it: its name, weight and config entry."""

    name: str
    where: str  # how errors name the entry
    spec: Any  # SyntheticSource | PairsSource | BeirSource | HubSource | RegistrySource
    weight: float

    def hard_negatives(self, recipe: int) -> int:
        """Hard negatives per example in this source's batches: its own setting, else the recipe's."""
        return recipe if self.spec.hard_negatives is None else int(self.spec.hard_negatives)


def source_entries(spec: DataSpec, base_dir: Path, config_file: Path | None = None) -> list[SourceEntry]:
    """The sources of ``spec`` (a preset expanded), each with its final name and weight; names must be distinct."""
    where = f"{config_file}: data" if config_file is not None else f"data config (paths relative to {base_dir})"
    sources = preset_sources(spec, where) if spec.preset is not None else list(spec.sources or [])
    entries: list[SourceEntry] = []
    for i, src in enumerate(sources):
        name = src.name or default_name(src)
        entry_where = f"{where}: sources[{i}]" if spec.sources is not None else where
        if any(e.name == name for e in entries):
            raise TrainInputError(entry_where, "name", f"two sources are named {name!r}", "give each source a distinct `name`")
        default_w = REGISTRY[src.source].weight if isinstance(src, RegistrySource) and src.source in REGISTRY else 1.0
        entries.append(SourceEntry(name, entry_where, src, src.weight if src.weight is not None else default_w))
    return entries


def negatives_per_source(spec: DataSpec, base_dir: Path, hard_negatives: int, config_file: Path | None = None) -> dict[str, int]:
    """Source name -> hard negatives per example in its batches (the recipe's unless the source says)."""
    return {e.name: e.hard_negatives(hard_negatives) for e in source_entries(spec, Path(base_dir), config_file)}


def check_negatives_possible(spec: DataSpec, base_dir: Path, hard_negatives: int, config_file: Path | None = None) -> None:
    """Refuse, before any data is read or mined, a source that cannot give ``hard_negatives`` per example.

    Known from the config alone: a mined source set to mine fewer per query, and a hub source
    (or registry entry read from the hub) without a negatives column. What is only known after
    reading (a pairs row with fewer, mining that found fewer) is :meth:`Mixture.check_negatives`'s.
    """
    for entry in source_entries(spec, Path(base_dir), config_file):
        check_source_negatives(entry, Path(base_dir), hard_negatives)


def check_source_negatives(entry: SourceEntry, base_dir: Path, hard_negatives: int) -> None:
    """:func:`check_negatives_possible` for one source (``hard_negatives``: the recipe's), so a caller
    that reads the sources from its own file (the harness's matrix) can name the entry in its terms."""
    src = entry.spec
    k = entry.hard_negatives(hard_negatives)
    if k == 0:
        return
    mined = isinstance(src, BeirSource) or (isinstance(src, RegistrySource) and src.path is not None
                                             and src.source != SYNTHETIC and resolve_path(base_dir, src.path).is_dir())
    if mined and src.negatives_per_query < k:
        raise TrainInputError(entry.where, "negatives_per_query",
                              f"source {entry.name!r} mines {src.negatives_per_query} hard negative(s) per query; "
                              f"its batches use hard_negatives {k} on every example",
                              f"set negatives_per_query: {k} (with mine_depth >= mine_skip_top + "
                              f"{k}), or lower hard_negatives")
    no_column = (isinstance(src, HubSource) and not src.columns.negatives) or (
        isinstance(src, RegistrySource) and src.path is None and src.source in REGISTRY
        and isinstance(REGISTRY[src.source].loader, HubLoader)
        and not REGISTRY[src.source].loader.columns.get("negatives"))  # type: ignore[union-attr]
    if no_column:
        raise TrainInputError(entry.where, "hard_negatives",
                              f"source {entry.name!r} has no hard negatives (no negatives column) and its batches "
                              f"would use {k} on every example",
                              "set hard_negatives: 0 on this source (in-batch negatives only), or give the source "
                              "negatives (a local copy in BEIR layout mines them: docs/training-data.md)")


def build_mixture(
    spec: DataSpec, base_dir: Path, encode: Encoder | None, seed: int, *, config_file: Path | None = None
) -> Mixture:
    """Load every source of ``spec`` (paths relative to ``base_dir``), mine where needed, and mix.

    ``encode(texts, is_query)`` (L2-normalised float32 rows) is needed only by BEIR sources with
    ``negatives_per_query > 0``; ``seed`` drives mining draws. Errors are TrainInputError; they name
    ``config_file`` (the training config the spec came from) when given, else ``base_dir``.
    """
    base_dir = Path(base_dir)
    loaded: dict[str, list[TrainExample]] = {}
    weights: dict[str, float] = {}
    for entry in source_entries(spec, base_dir, config_file):
        src, name, entry_where = entry.spec, entry.name, entry.where
        if isinstance(src, SyntheticSource):
            examples = load_synthetic(resolve_path(base_dir, src.path), source=name, instruction=src.instruction,
                                      max_examples=src.max_examples)
        elif isinstance(src, PairsSource):
            examples = load_pairs(resolve_path(base_dir, src.path), source=name, instruction=src.instruction,
                                  max_examples=src.max_examples)
        elif isinstance(src, BeirSource):
            examples = load_beir(resolve_path(base_dir, src.path), encode=encode, split=src.split, source=name,
                                 instruction=src.instruction, negatives_per_query=src.negatives_per_query,
                                 mine_skip_top=src.mine_skip_top, mine_depth=src.mine_depth, seed=seed,
                                 max_examples=src.max_examples)
        elif isinstance(src, HubSource):
            files = src.data_files
            if files is not None:
                files = str(resolve_path(base_dir, files)) if isinstance(files, str) else [str(resolve_path(base_dir, f)) for f in files]
            examples = load_hub(src.dataset, columns=src.columns, config=src.config, split=src.split, data_files=files,
                                revision=src.revision, source=name, instruction=src.instruction,
                                max_examples=src.max_examples, where=entry_where)
        else:
            examples = _load_registry(src, base_dir, encode, seed, entry_where)
            if name != src.source:
                examples = [TrainExample(e.query, e.positive, e.negatives, e.instruction, name, e.in_batch_negatives)
                            for e in examples]
        if not examples:
            raise TrainInputError(entry_where, name, "the source produced no examples", "check its path, split or max_examples")
        loaded[name] = examples
        weights[name] = entry.weight
    return Mixture(loaded, weights)
