"""Training data: sources (synthetic, BEIR + mined negatives, pairs JSONL, hub datasets, the paper's
registry), the ``data:`` config models, and the deterministic, resumable mixture the trainer draws from."""

from trainers.data.beir import load_beir, read_beir_split
from trainers.data.hub import HubColumns, load_hub
from trainers.data.mining import mine_hard_negatives
from trainers.data.mixture import Mixture, build_mixture
from trainers.data.pairs import load_pairs
from trainers.data.registry import PRESETS, REGISTRY
from trainers.data.spec import DataSpec, SourceSpec
from trainers.data.synthetic import load_synthetic

__all__ = [
    "DataSpec", "HubColumns", "Mixture", "PRESETS", "REGISTRY", "SourceSpec", "build_mixture", "load_beir",
    "load_hub", "load_pairs", "load_synthetic", "mine_hard_negatives", "read_beir_split",
]
