"""Which backend a model gets (issue #7 item 4), decided from the model's own files.

The E5-style export built here is what ``trainers/`` will write (and what e5-mistral ships): a
sentence-transformers directory whose Transformer module sits at the root of a Llama decoder,
a Pooling module in last-token mode, a Normalize module, saved prompts, and a tokenizer that
appends the EOS itself. The model is tiny and random (no hub), which is enough to compare
token ids and vectors with plain ``SentenceTransformer(dir)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.schema import ModelSpec
from harness.evaluation.models.backend import decide_backend
from harness.evaluation.models.loader import load_embedder, resolve_model
from harness.evaluation.models.reference import ModelReference
from tests.helpers import cli, read_json

REPO = Path(__file__).resolve().parents[1]
MAX_LEN = 16
WORDS = ("how long should bread dough rise what causes ocean tides the moon sun gravity a an of to is are in "
         "and for do i fix flat bicycle tire read file line by python").split()


def _e5_export(root: Path, *, pooling: str = "lasttoken") -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    root.mkdir(parents=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="</s>").save_pretrained(root)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(root)
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, f"pooling_mode_{pooling}": True}))
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_LEN, "do_lower_case": False}))
    (root / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "Instruct: Given a question, retrieve passages\nQuery: "}, "similarity_fn_name": "cosine"}))
    return root


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _e5_export(tmp_path_factory.mktemp("e5") / "model")


def test_last_token_export_is_routed_to_the_decoder_backend(export: Path) -> None:
    d = decide_backend(ModelReference("path", str(export)))
    assert d.backend == "decoder" and "last-token pooling" in d.reason
    assert d.normalize is True and d.max_seq_length == MAX_LEN and "query" in d.prompts


def test_mean_pooling_export_stays_on_sentence_transformers(tmp_path: Path) -> None:
    d = decide_backend(ModelReference("path", str(_e5_export(tmp_path / "m", pooling="mean_tokens"))))
    assert d.backend == "sentence-transformers" and d.pooling == "mean"


def test_ids_and_vectors_match_plain_sentence_transformers(export: Path) -> None:
    from sentence_transformers import SentenceTransformer

    emb = load_embedder(ModelSpec(name="e5", model=str(export)), export.parent)
    assert type(emb).__name__ == "DecoderEmbedder" and emb.adds_eos and emb.normalize and emb.max_length == MAX_LEN
    st = SentenceTransformer(str(export), device="cpu")
    exact = " ".join(WORDS[:MAX_LEN - 2])  # BOS + 14 words + EOS = exactly max_length
    texts = [exact, " ".join(WORDS), "how long should bread dough rise", "the moon </s>"]
    ours = emb.tokenize(texts)
    theirs = st.tokenize(texts)
    for row in range(len(texts)):
        a = ours["input_ids"][row][ours["attention_mask"][row].bool()].tolist()
        b = theirs["input_ids"][row][theirs["attention_mask"][row].bool()].tolist()
        assert a == b, (texts[row], a, b)
        assert a[-1] == 2
    assert len(ours["input_ids"][0][ours["attention_mask"][0].bool()]) == MAX_LEN, "no token lost to the EOS"
    np.testing.assert_allclose(emb.embed(texts), st.encode(texts, convert_to_numpy=True), atol=1e-5)


def test_decoder_mean_and_cls_pooling_do_what_they_say(export: Path) -> None:
    texts = ["how long should bread dough rise", "the moon"]
    last = load_embedder(ModelSpec(name="a", model=str(export)), export.parent)
    mean = load_embedder(ModelSpec(name="b", model=str(export), pooling="mean"), export.parent)
    cls = load_embedder(ModelSpec(name="c", model=str(export), pooling="cls"), export.parent)
    assert len({last.fingerprint, mean.fingerprint, cls.fingerprint}) == 3
    batch = last.tokenize(texts)
    with torch.inference_mode():
        hidden = last.model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    norm = torch.nn.functional.normalize
    np.testing.assert_allclose(mean.embed(texts), norm((hidden * m).sum(1) / m.sum(1), dim=-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(cls.embed(texts), norm(hidden[:, 0], dim=-1).numpy(), atol=1e-5)


def test_plan_shows_and_provenance_records_the_decision_and_e5_template(export: Path, tmp_path: Path) -> None:
    shutil.copytree(REPO / "harness" / "smoke_data" / "retrieval", tmp_path / "retrieval")
    m = tmp_path / "m.yaml"
    m.write_text(f"name: e5\noutput: {tmp_path / 'run'}\nmodels:\n  - name: e5-export\n    model: {export}\n"
                 "tasks:\n  - name: HarnessSmokeRetrieval\n    data: retrieval\n    subsets: [en]\n"
                 "  - name: HarnessSmokeSTS\n    data: " + str(REPO / "harness" / "smoke_data" / "sts") + "\n")
    plan = cli("plan", str(m))
    assert plan.exit_code == 0 and "backend decoder (sentence-transformers export with last-token pooling" in plan.output
    result = cli("run", str(m), "--no-progress")
    assert result.exit_code == 0, result.output
    rev = next((tmp_path / "run" / "results" / "e5-export").iterdir())
    retrieval = read_json(rev / "HarnessSmokeRetrieval.json")["harness_provenance"]
    assert retrieval["model"]["backend"]["backend"] == "decoder"
    assert retrieval["instructions"]["mode"] == "e5"
    query_prefix = [p for p in retrieval["instructions"]["prefixes"] if p]
    assert "" in retrieval["instructions"]["prefixes"] and len(query_prefix) == 1  # documents bare
    assert query_prefix[0].startswith("Instruct: ") and query_prefix[0].endswith("\nQuery: ")
    sts = read_json(rev / "HarnessSmokeSTS.json")["harness_provenance"]["instructions"]["prefixes"]
    assert len(sts) == 1 and sts[0].startswith("Instruct: ")  # every input of a symmetric task


def test_hub_causal_lm_goes_to_the_decoder_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "d" * 40
    snap = tmp_path / "hub" / "models--org--tiny-llm" / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    rm = resolve_model(ModelSpec(name="x", model="org/tiny-llm"), tmp_path)
    assert rm.decision.backend == "decoder" and "LlamaForCausalLM" in rm.decision.reason
    assert rm.identity.hub_commit == commit


# --- an unreachable hub (issue #17 item 8): retried, then one clear error; never a changed decision ---

SHA = "b" * 40


def _hub_files(root: Path) -> Path:
    """Three hub models' JSON files (the decision reads nothing else), one per way of deciding."""
    files = {
        "org/e5-like": {"modules.json": [{"path": "", "type": "sentence_transformers.models.Transformer"},
                                         {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                                         {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
                        "1_Pooling/config.json": {"pooling_mode_lasttoken": True}},
        "org/plain-st": {"modules.json": [{"path": "", "type": "sentence_transformers.models.Transformer"},
                                          {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
                         "1_Pooling/config.json": {"pooling_mode_mean_tokens": True},
                         "sentence_bert_config.json": {"max_seq_length": 128}},
        "org/causal": {"config.json": {"architectures": ["LlamaForCausalLM"]}},
    }
    for repo, named in files.items():
        for rel, obj in named.items():
            (root / repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / repo / rel).write_text(json.dumps(obj))
    return root


class _FlakyHub:
    """Test double for the hub's faults: serves files from a folder, but the first ``failures`` calls
    fail as huggingface_hub does without a connection (``LocalEntryNotFoundError``)."""

    def __init__(self, root: Path, failures: float) -> None:
        self.root, self.failures, self.calls = root, failures, 0

    def __call__(self, repo_id: str, filename: str, *, revision: str | None = None, cache_dir: str | None = None) -> str:
        import httpx2
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

        self.calls += 1
        assert revision == SHA
        if self.calls <= self.failures:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub")
        path = self.root / repo_id / filename
        if not path.is_file():
            url = f"https://huggingface.co/{repo_id}/resolve/{revision}/{filename}"
            raise RemoteEntryNotFoundError("404", response=httpx2.Response(404, request=httpx2.Request("HEAD", url)))
        return str(path)


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The hub may be asked (the suite is offline by default) and nothing is cached; returns the pauses taken."""
    import time

    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)  # the backoff is recorded, not waited for
    return pauses


def _decide_all(hub: _FlakyHub, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setattr("huggingface_hub.hf_hub_download", hub)
    return [decide_backend(ModelReference("hub", repo), hub_commit=SHA).to_json()
            for repo in ("org/e5-like", "org/plain-st", "org/causal")]


def test_a_transient_hub_failure_is_retried_and_changes_no_decision(online: list[float], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _hub_files(tmp_path / "hub-files")
    never_failing = _decide_all(_FlakyHub(root, failures=0), monkeypatch)
    assert [d["backend"] for d in never_failing] == ["decoder", "sentence-transformers", "decoder"]
    assert never_failing[1]["max_seq_length"] == 128 and "LlamaForCausalLM" in never_failing[2]["reason"]
    assert online == []
    flaky = _FlakyHub(root, failures=2)  # the first download fails twice, then the connection is back
    assert _decide_all(flaky, monkeypatch) == never_failing  # every model planned after it included
    assert online == [1.0, 2.0]  # short, growing pauses between the tries


def test_a_hub_that_stays_unreachable_fails_planning_with_one_clear_error(online: list[float], tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.errors import InputError

    monkeypatch.setattr("huggingface_hub.hf_hub_download", _FlakyHub(tmp_path, failures=float("inf")))
    with pytest.raises(InputError) as err:
        decide_backend(ModelReference("hub", "org/causal"), hub_commit=SHA, source=tmp_path / "m.yaml",
                       field="models[causal].model")
    e = err.value
    assert e.file == str(tmp_path / "m.yaml") and e.field == "models[causal].model"
    assert "org/causal" in e.problem and "could not be reached" in e.problem
    assert "retry" in e.fix and "HF_HUB_OFFLINE=1" in e.fix and "local path" in e.fix
    assert len(online) == 2  # three tries
    with pytest.raises(InputError, match="model 'org/causal'"):  # without a matrix location it names the model
        decide_backend(ModelReference("hub", "org/causal"), hub_commit=SHA)


def test_models_planned_after_an_unreachable_hub_keep_their_decisions(online: list[float], tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The old code remembered one connection failure for the whole process, so every later model was
    guessed from mteb's registry ('org/causal' became sentence-transformers): identities changed silently."""
    from harness.errors import InputError

    root = _hub_files(tmp_path / "hub-files")
    never_failing = _decide_all(_FlakyHub(root, failures=0), monkeypatch)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", _FlakyHub(root, failures=float("inf")))
    with pytest.raises(InputError):
        decide_backend(ModelReference("hub", "org/e5-like"), hub_commit=SHA)
    assert _decide_all(_FlakyHub(root, failures=0), monkeypatch) == never_failing  # the hub is back
