"""The ``data:`` section of a training config: which sources, how they are read, how they are mixed.

Either a named preset (``preset: full``, with ``paths:`` giving local copies for the sources that
need one) or an explicit ``sources:`` list. Paths are relative to the config file's directory, so a
config and its data move together. Unknown keys are rejected (``extra="forbid"``): a misspelt
option must fail, not be silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainers.data.hub import HubColumns


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="source name in the mixture; defaults per kind")
    instruction: str | None = Field(default=None, description="replaces every example's task string")
    weight: float | None = Field(default=None, gt=0, description="sampling weight; default 1 (registry: its weight)")
    max_examples: int | None = Field(default=None, gt=0, description="keep the first N examples")
    hard_negatives: int | None = Field(default=None, ge=0, description=(
        "hard negatives per example for this source's batches (default: the recipe's); every batch "
        "is one source's, so a source without negatives (eli5, nq, squad) says 0 here"))


class SyntheticSource(_Source):
    """Generator output: a directory holding examples.jsonl, or the file itself."""

    kind: Literal["synthetic"]
    path: str


class _Mining(BaseModel):
    """Hard-negative mining settings, shared by every source read from a BEIR folder."""

    negatives_per_query: int = Field(default=1, ge=0)
    mine_skip_top: int = Field(default=3, ge=0, description="non-positive ranks skipped (likely false negatives)")
    mine_depth: int = Field(default=30, gt=0, description="deepest non-positive rank a negative is drawn from")

    @model_validator(mode="after")
    def _window(self) -> "_Mining":
        if self.mine_depth < self.mine_skip_top + self.negatives_per_query:
            raise ValueError(
                f"mine_depth ({self.mine_depth}) must be >= mine_skip_top ({self.mine_skip_top}) + "
                f"negatives_per_query ({self.negatives_per_query})"
            )
        return self


class BeirSource(_Source, _Mining):
    """A BEIR-layout folder's split; negatives mined with the caller's embedder."""

    kind: Literal["beir"]
    path: str
    split: str = "train"


class PairsSource(_Source):
    """A JSONL of {query, positive, negatives | negative, instruction?} rows."""

    kind: Literal["pairs"]
    path: str


class HubSource(_Source):
    """``datasets.load_dataset(dataset, config, split=split, data_files=...)`` with a column mapping."""

    kind: Literal["hub"]
    dataset: str
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | None = Field(default=None, description="local files (relative to the config)")
    columns: HubColumns


class RegistrySource(_Source, _Mining):
    """One of the paper's public sources by name; ``path`` points at a local copy instead of the hub."""

    kind: Literal["registry"]
    source: str
    path: str | None = None
    split: str = "train"


SourceSpec = Annotated[
    Union[SyntheticSource, BeirSource, PairsSource, HubSource, RegistrySource], Field(discriminator="kind")
]


class DataSpec(BaseModel):
    """``preset`` (+ ``paths`` / ``weights`` overrides) or ``sources``, not both."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = None
    paths: dict[str, str] = Field(default_factory=dict, description="registry source name -> local copy (preset only)")
    weights: dict[str, float] = Field(default_factory=dict, description="registry source name -> weight (preset only)")
    sources: list[SourceSpec] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> "DataSpec":
        if (self.preset is None) == (self.sources is None):
            raise ValueError("give exactly one of `preset` (e.g. full, synthetic-only) or `sources` (a list)")
        if self.sources is not None and (self.paths or self.weights):
            raise ValueError("`paths` and `weights` apply to a preset; with `sources`, set path/weight on each source")
        if self.sources is not None and not self.sources:
            raise ValueError("`sources` is empty; list at least one source")
        if any(w <= 0 for w in self.weights.values()):
            raise ValueError("`weights` must be > 0")
        return self
