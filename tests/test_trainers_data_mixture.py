"""The mixture: config models, registry/preset errors, determinism and resume, one source per
batch, weights, epochs without repeats, and the saved mixture file (round trip, tamper detection)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from generators.output import write_examples
from tests.conftest import shared_data
from tests.test_trainers_data_sources import SYNTHETIC_ROWS, hashed_bow
from trainers.data.mixture import Mixture, build_mixture
from trainers.data.registry import PRESETS, PUBLIC_SOURCES, REGISTRY
from trainers.data.spec import DataSpec
from trainers.errors import TrainInputError
from trainers.examples import TrainExample


def _source(name: str, n: int) -> list[TrainExample]:
    return [TrainExample(f"{name} q{i}", f"{name} p{i}", (f"{name} n{i}",), "inst", name) for i in range(n)]


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A config directory holding real generator output and a pairs file, plus a link to SciFact."""
    write_examples(tmp_path / "gen", SYNTHETIC_ROWS * 6)  # 42 rows
    (tmp_path / "pairs.jsonl").write_text(
        "\n".join(json.dumps({"query": f"q{i}", "positive": f"p{i}", "negative": f"n{i}"}) for i in range(30)) + "\n")
    (tmp_path / "scifact").symlink_to(shared_data() / "scifact")
    return tmp_path


SPEC = {
    "sources": [
        {"kind": "synthetic", "path": "gen", "weight": 2},
        {"kind": "pairs", "path": "pairs.jsonl", "name": "mine", "instruction": "Find the passage"},
        {"kind": "beir", "path": "scifact", "max_examples": 60, "negatives_per_query": 1, "mine_skip_top": 2,
         "mine_depth": 12, "instruction": "Given a scientific claim, retrieve documents that support or refute the claim"},
    ]
}


def test_batches_are_a_pure_function_of_seed_step_and_data(config_dir: Path) -> None:
    spec = DataSpec.model_validate(SPEC)
    a = build_mixture(spec, config_dir, hashed_bow, seed=3)
    b = build_mixture(spec, config_dir, hashed_bow, seed=3)  # a second, independent build (as after a restart)
    assert a.counts() == {"synthetic": 42, "mine": 30, "scifact": 60}
    assert a.fingerprint() == b.fingerprint()
    uninterrupted = [a.batch(k, 8, seed=11) for k in range(300)]
    # "killed" after step 150, resumed without replaying: ask b for steps 150.. directly, out of order too
    assert [b.batch(k, 8, seed=11) for k in (299, 150, 151, 200)] == [uninterrupted[k] for k in (299, 150, 151, 200)]
    assert a.batch(5, 8, seed=12) != a.batch(5, 8, seed=11) or a.batch(6, 8, seed=12) != a.batch(6, 8, seed=11)
    # one source per batch, and in-batch examples all come from it
    for name, batch in uninterrupted:
        assert len(batch) == 8 and {e.source for e in batch} == {name}
    assert {name for name, _ in uninterrupted} == {"synthetic", "mine", "scifact"}
    mine = next(batch for name, batch in uninterrupted if name == "mine")
    assert {e.instruction for e in mine} == {"Find the passage"}


def test_weights_are_respected_statistically() -> None:
    m = Mixture({"a": _source("a", 20), "b": _source("b", 20), "c": _source("c", 20)}, {"a": 6.0, "b": 3.0, "c": 1.0})
    steps = 6000
    names = [m.source_of(k, seed=0) for k in range(steps)]
    for name, p in (("a", 0.6), ("b", 0.3), ("c", 0.1)):
        sd = (p * (1 - p) / steps) ** 0.5
        assert abs(names.count(name) / steps - p) < 4.5 * sd, (name, names.count(name))
    assert [m.batch(k, 4, seed=0)[0] for k in range(50)] == names[:50]  # source_of agrees with batch


def test_each_epoch_walks_a_permutation_without_repeats() -> None:
    m = Mixture({"a": _source("a", 43), "b": _source("b", 10)}, {"a": 1.0, "b": 1.0})
    batches = [batch for k in range(400) for name, batch in [m.batch(k, 8, seed=5)] if name == "a"]
    per_epoch = 43 // 8  # 5 full batches; the 3-example tail of each epoch is dropped
    assert len(batches) >= 3 * per_epoch
    epochs = [sum(batches[e * per_epoch:(e + 1) * per_epoch], []) for e in range(3)]
    for ep in epochs:
        assert len({x.query for x in ep}) == 40  # 40 distinct examples: nothing repeats within an epoch
    assert [x.query for x in epochs[0]] != [x.query for x in epochs[1]]  # a fresh permutation each epoch
    with pytest.raises(TrainInputError, match=r"field 'sources.b': has 10 examples, fewer than one batch of 16"):
        m.batch(0, 16, seed=5)


def test_save_load_round_trip_and_tampering(tmp_path: Path, config_dir: Path) -> None:
    m = build_mixture(DataSpec.model_validate(SPEC), config_dir, hashed_bow, seed=3)
    path = tmp_path / "run" / "mixture.jsonl"
    m.save(path)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary behind
    loaded = Mixture.load(path)  # no encoder needed: mined negatives are in the file
    assert loaded.fingerprint() == m.fingerprint() and loaded.counts() == m.counts()
    assert loaded.sources == m.sources
    assert [loaded.batch(k, 8, 1) for k in range(40)] == [m.batch(k, 8, 1) for k in range(40)]
    assert sum(1 for e in loaded.sources["synthetic"] if not e.in_batch_negatives) == 6  # classification rows
    lines = path.read_text().splitlines()
    row = json.loads(lines[5])
    row["positive"] += " (edited)"
    edited = lines[:5] + [json.dumps(row)] + lines[6:]
    path.write_text("\n".join(edited) + "\n")
    with pytest.raises(TrainInputError, match="does not match the recorded fingerprint"):
        Mixture.load(path)
    path.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(TrainInputError, match="counts differ"):
        Mixture.load(path)
    path.write_text("\n".join(lines[:3] + ['{"query": 1}'] + lines[4:]) + "\n")
    with pytest.raises(TrainInputError, match=rf"{path}, line 4: field 'query'"):
        Mixture.load(path)


def test_registry_holds_the_papers_sources_and_instructions() -> None:
    assert set(PUBLIC_SOURCES) == {"eli5", "hotpotqa", "fever", "miracl", "msmarco-passage", "msmarco-document", "nq",
                                   "nli", "squad", "triviaqa", "quora", "mrtydi", "dureader", "t2ranking"}
    assert REGISTRY["fever"].instructions == ("Given a claim, retrieve documents that support or refute the claim",)
    assert len(REGISTRY["quora"].instructions) == 2 and len(REGISTRY["nli"].instructions) == 2
    assert set(PRESETS["full"]) == {"synthetic", *PUBLIC_SOURCES}
    assert all(REGISTRY[n].weight > 0 for n in REGISTRY)


def test_unknown_source_or_preset_suggests_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(TrainInputError, match=r"train.yaml: data: field 'preset': unknown preset 'ful'.*did you mean 'full'"):
        build_mixture(DataSpec(preset="ful"), tmp_path, None, 0, config_file=tmp_path / "train.yaml")
    spec = DataSpec.model_validate({"sources": [{"kind": "registry", "source": "msmarco-pasage"}]})
    with pytest.raises(TrainInputError, match=r"sources\[0\].*unknown registry source 'msmarco-pasage'.*did you mean 'msmarco-passage'"):
        build_mixture(spec, tmp_path, None, 0)
    with pytest.raises(TrainInputError, match=r"field 'paths.synthetic'.*Fix: add `paths: \{synthetic:"):
        build_mixture(DataSpec(preset="synthetic-only"), tmp_path, None, 0)
    with pytest.raises(TrainInputError, match=r"field 'paths.synthtic'.*did you mean 'synthetic'"):
        build_mixture(DataSpec(preset="synthetic-only", paths={"synthtic": "gen"}), tmp_path, None, 0)
    fever = DataSpec.model_validate({"sources": [{"kind": "registry", "source": "fever"}]})
    with pytest.raises(TrainInputError, match=r"field 'paths.fever'.*local folder"):
        build_mixture(fever, tmp_path, None, 0)


def test_presets_and_registry_sources_from_local_copies(config_dir: Path) -> None:
    m = build_mixture(DataSpec(preset="synthetic-only", paths={"synthetic": "gen"}), config_dir, None, 0)
    assert m.counts() == {"synthetic": 42} and m.weights == {"synthetic": 500.0}
    spec = DataSpec.model_validate({"sources": [
        {"kind": "registry", "source": "fever", "path": "scifact", "max_examples": 20, "mine_depth": 8},
        {"kind": "registry", "source": "quora", "path": "pairs.jsonl", "weight": 2.5},
    ]})
    m = build_mixture(spec, config_dir, hashed_bow, 0)
    assert m.counts() == {"fever": 20, "quora": 30}
    assert m.weights == {"fever": REGISTRY["fever"].weight, "quora": 2.5}
    assert {e.instruction for e in m.sources["fever"]} == set(REGISTRY["fever"].instructions)
    assert {e.instruction for e in m.sources["quora"]} == set(REGISTRY["quora"].instructions)  # both used


def test_data_spec_rejects_ambiguous_or_misspelt_configs() -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        DataSpec.model_validate({"preset": "full", "sources": [{"kind": "pairs", "path": "x.jsonl"}]})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        DataSpec.model_validate({"sources": [{"kind": "pairs", "path": "x.jsonl", "wieght": 2}]})
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        DataSpec.model_validate({"sources": [{"kind": "csv", "path": "x.csv"}]})
    with pytest.raises(ValidationError, match="mine_depth"):
        DataSpec.model_validate({"sources": [{"kind": "beir", "path": "b", "mine_skip_top": 5, "mine_depth": 5}]})
    with pytest.raises(ValidationError, match="greater than 0"):
        DataSpec.model_validate({"sources": [{"kind": "pairs", "path": "x.jsonl", "weight": 0}]})


def test_resume_across_schedule_blocks_keeps_epochs_whole() -> None:
    """Past the first block of source draws (4096 steps) the per-source batch count must carry over,
    or batches after the boundary would repeat examples already served in the same epoch."""
    def build() -> Mixture:
        return Mixture({"a": _source("a", 400), "b": _source("b", 64)}, {"a": 1.0, "b": 1.0})

    m = build()
    a_batches = [batch for k in range(9000) for name, batch in [m.batch(k, 4, seed=2)] if name == "a"]
    assert len(a_batches) > 4000  # spans three blocks of the schedule
    full_epochs = len(a_batches) // 100
    for e in range(full_epochs):
        epoch = sum(a_batches[e * 100:(e + 1) * 100], [])
        assert len({x.query for x in epoch}) == 400
    fresh = build()  # a restarted process asking for late steps first
    assert [fresh.batch(k, 4, seed=2) for k in (8999, 4096, 4095, 6000)] == [m.batch(k, 4, seed=2) for k in (8999, 4096, 4095, 6000)]
