"""The paper's 13 public training sources (plus the synthetic data) and the named presets.

Instructions are the paper's (Wang et al. 2024, arXiv 2401.00368, appendix "Instructions for
Training and Evaluation", table "Instructions for each training dataset"; the same strings are in
McGill-NLP/llm2vec llm2vec/dataset/E5Data.py); where it lists two for a
dataset (NLI, MS MARCO, Quora) both are kept and each example gets one by a stable hash of its query.
MS MARCO's two strings are the passage and the document variants, so each goes to its own entry.

Loaders: a public hub dataset with a column mapping where a suitable one exists (online users), or
``beir`` for sources whose public form is a corpus + qrels (the user converts it to the BEIR layout
once and gives its path; negatives are then mined with the caller's embedder). Hub ids and columns
were taken from the datasets' cards and could not be loaded here (no hub access); ``verified`` says
whether the column names were seen on the card. Any entry can be pointed at a local copy instead.

Weights: approximately each source's number of training examples (thousands, from the dataset
cards / papers, rounded), so sampling by weight matches the paper's mixing, which concatenates the
datasets rather than balancing them. They are relative; a config can override any of them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from trainers.errors import TrainInputError

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class HubLoader:
    """``datasets.load_dataset(dataset, config, split=split)`` with ``columns`` mapping roles to columns."""

    dataset: str
    config: str | None
    columns: dict[str, str | list[str]]
    split: str = "train"
    verified: bool = False
    kind: str = "hub"


@dataclass(frozen=True)
class BeirLoader:
    """A local BEIR-layout folder (corpus + queries + qrels/train.tsv) the user prepares; negatives mined."""

    how: str
    kind: str = "beir"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    title: str
    instructions: tuple[str, ...]
    weight: float
    loader: HubLoader | BeirLoader | None  # None: synthetic (a generator output path)
    notes: str = ""


_QA_WIKI = "Given a question, retrieve Wikipedia passages that answer the question"
_QA_WIKI_SHORT = "Retrieve Wikipedia passages that answer the question"
_CN_WEB = "Given a Chinese search query, retrieve web passages that answer the question"
_TRIPLET = {"query": "anchor", "positive": "positive", "negatives": "negative"}
_TEVATRON = {"query": "query", "positive": "positive_passages", "negatives": "negative_passages"}

_ENTRIES = [
    RegistryEntry(SYNTHETIC, "Synthetic (generators/)", (), 500.0, None,
                  "instruction comes from each row; the paper used ~500k synthetic examples"),
    RegistryEntry("eli5", "ELI5", ("Provided a user question, retrieve the highest voted answers on Reddit ELI5 forum",), 325.0,
                  HubLoader("sentence-transformers/eli5", "pair", {"query": "question", "positive": "answer"}, verified=True),
                  "no hard negatives in the public pairs; in-batch negatives only"),
    RegistryEntry("hotpotqa", "HotpotQA", ("Given a multi-hop question, retrieve documents that can help answer the question",), 85.0,
                  HubLoader("sentence-transformers/hotpotqa", "triplet", _TRIPLET)),
    RegistryEntry("fever", "FEVER", ("Given a claim, retrieve documents that support or refute the claim",), 110.0,
                  BeirLoader("BEIR `fever` folder (its qrels/train.tsv), negatives mined")),
    RegistryEntry("miracl", "MIRACL", (_QA_WIKI,), 40.0,
                  HubLoader("miracl/miracl", "en", _TEVATRON),
                  "one config per language (16 with train splits); gated: accept the terms on the hub; "
                  "negatives are human-judged non-relevant passages"),
    RegistryEntry("msmarco-passage", "MS MARCO passage",
                  ("Given a web search query, retrieve relevant passages that answer the query",), 503.0,
                  HubLoader("sentence-transformers/msmarco-msmarco-distilbert-base-tas-b", "triplet",
                            {"query": "query", "positive": "positive", "negatives": "negative"}, verified=True),
                  "hard negatives mined with msmarco-distilbert-base-tas-b"),
    RegistryEntry("msmarco-document", "MS MARCO document",
                  ("Given a web search query, retrieve relevant documents that answer the query",), 367.0,
                  BeirLoader("MS MARCO document ranking train (docs + queries + qrels) converted to BEIR layout")),
    RegistryEntry("nq", "Natural Questions", (_QA_WIKI,), 100.0,
                  HubLoader("sentence-transformers/natural-questions", None, {"query": "query", "positive": "answer"}),
                  "pairs only; in-batch negatives"),
    RegistryEntry("nli", "NLI (SNLI + MultiNLI)",
                  ("Given a premise, retrieve a hypothesis that is entailed by the premise", "Retrieve semantically similar text"), 557.0,
                  HubLoader("sentence-transformers/all-nli", "triplet", _TRIPLET),
                  "contradiction hypothesis as the hard negative"),
    RegistryEntry("squad", "SQuAD", (_QA_WIKI_SHORT,), 88.0,
                  HubLoader("sentence-transformers/squad", None, {"query": "question", "positive": "answer"})),
    RegistryEntry("triviaqa", "TriviaQA", (_QA_WIKI_SHORT,), 74.0,
                  HubLoader("sentence-transformers/trivia-qa-triplet", "triplet", _TRIPLET)),
    RegistryEntry("quora", "Quora duplicate questions",
                  ("Given a question, retrieve questions that are semantically equivalent to the given question",
                   "Find questions that have the same meaning as the input question"), 102.0,
                  HubLoader("sentence-transformers/quora-duplicates", "triplet", _TRIPLET, verified=True)),
    RegistryEntry("mrtydi", "Mr. TyDi", (_QA_WIKI,), 49.0,
                  HubLoader("castorini/mr-tydi", "combined", _TEVATRON),
                  "configs per language or 'combined'; BM25 negatives"),
    RegistryEntry("dureader", "DuReader-retrieval", (_CN_WEB,), 86.0,
                  BeirLoader("DuReader-retrieval train (passages + queries + qrels) converted to BEIR layout"),
                  "the hub copies use loading scripts, which `datasets` 4+ no longer runs"),
    RegistryEntry("t2ranking", "T2Ranking", (_CN_WEB,), 200.0,
                  BeirLoader("THUIR/T2Ranking collection.tsv + queries.train.tsv + qrels.retrieval.train.tsv converted to BEIR layout")),
]

REGISTRY: dict[str, RegistryEntry] = {e.name: e for e in _ENTRIES}
PUBLIC_SOURCES: tuple[str, ...] = tuple(e.name for e in _ENTRIES if e.name != SYNTHETIC)

PRESETS: dict[str, tuple[str, ...]] = {
    "synthetic-only": (SYNTHETIC,),
    "msmarco-only": ("msmarco-passage",),
    "synthetic-msmarco": (SYNTHETIC, "msmarco-passage"),
    "full": (SYNTHETIC, *PUBLIC_SOURCES),
}


def closest(name: str, options: list[str] | tuple[str, ...]) -> str:
    """The valid name a typo most likely meant (difflib), or the list when nothing is close."""
    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f"did you mean {match[0]!r}? (valid: {', '.join(options)})" if match else f"use one of: {', '.join(options)}"


def get_entry(name: str, where: str | None = None) -> RegistryEntry:
    if name not in REGISTRY:
        raise TrainInputError(where, "source", f"unknown registry source {name!r}", closest(name, tuple(REGISTRY)))
    return REGISTRY[name]


def get_preset(name: str, where: str | None = None) -> tuple[str, ...]:
    if name not in PRESETS:
        raise TrainInputError(where, "preset", f"unknown preset {name!r}", closest(name, tuple(PRESETS)))
    return PRESETS[name]
