"""Hard-negative mining by exact cosine search with a caller-supplied embedder.

The data layer stays model-agnostic: the caller passes ``encode(texts, is_query)`` returning
L2-normalised float32 vectors (e.g. the base model with the training template), and this module
only ranks. Search is exact (matmul over query chunks, so memory stays bounded by
``chunk_size x len(documents)`` scores) because approximate search would make the mined set depend
on index parameters.

Which documents become negatives: rank every document for a query, drop the query's positives,
skip the first ``skip_top`` remaining ranks (the most similar "negatives" are often unlabelled
positives — false negatives hurt contrastive training), and draw ``negatives_per_query`` from the
remaining ranks up to ``depth`` (counted without positives). The draw is seeded by (seed, query
text), so the result does not depend on which other queries are mined with it or in what order;
with ``depth == skip_top + negatives_per_query`` it is simply the next top-ranked documents.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Collection, Sequence

import numpy as np

Encoder = Callable[[list[str], bool], np.ndarray]


def _accepts_instruction(encode: Callable[..., np.ndarray]) -> bool:
    try:
        params = inspect.signature(encode).parameters
    except (TypeError, ValueError):
        return False
    return "instruction" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_encoder(encode: Encoder, texts: list[str], is_query: bool, instruction: str = "") -> np.ndarray:
    """Call ``encode(texts, is_query)``, adding ``instruction=`` when the encoder accepts it.

    An embedder that mines "with the training template" needs the source's task string for its
    queries; passing it only to encoders that declare an ``instruction`` (or ``**kwargs``) parameter
    keeps the plain two-argument protocol working and the data layer model-agnostic.
    """
    if _accepts_instruction(encode):
        return encode(texts, is_query, instruction=instruction)  # type: ignore[call-arg]
    return encode(texts, is_query)


def _check_vectors(vecs: np.ndarray, n: int, what: str) -> np.ndarray:
    arr = np.asarray(vecs, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"encode returned shape {arr.shape} for {n} {what}; expected ({n}, dim)")
    if not np.isfinite(arr).all():
        raise ValueError(f"encode returned non-finite values for {what}")
    norms = np.linalg.norm(arr, axis=1)
    if n and np.abs(norms - 1.0).max() > 1e-3:
        raise ValueError(
            f"encode must return L2-normalised vectors (cosine = dot product); {what} norms range "
            f"{norms.min():.4f}..{norms.max():.4f}"
        )
    return arr


def query_rng(seed: int, query: str) -> np.random.Generator:
    """A generator keyed by (seed, query text): stable across processes (unlike ``hash()``)."""
    digest = hashlib.sha256(f"{seed}\x00{query}".encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def rank_documents(
    query_vecs: np.ndarray, doc_vecs: np.ndarray, k: int, chunk_size: int = 1024, doc_chunk_size: int = 1 << 16
) -> np.ndarray:
    """Indices of the top-``k`` documents per query by dot product, best first; ties by lower index.

    Scores are computed block by block (``chunk_size`` queries x ``doc_chunk_size`` documents,
    of float32 = 256 MiB at the defaults) and only each block's top-``k`` is kept, so an MS MARCO-sized corpus
    never materialises a full query x corpus score matrix.
    """
    n_docs = doc_vecs.shape[0]
    k = min(k, n_docs)
    out = np.empty((query_vecs.shape[0], k), dtype=np.int64)
    for start in range(0, query_vecs.shape[0], chunk_size):
        qc = query_vecs[start : start + chunk_size]
        best_idx = np.empty((qc.shape[0], 0), dtype=np.int64)
        best_score = np.empty((qc.shape[0], 0), dtype=np.float32)
        for d0 in range(0, n_docs, doc_chunk_size):
            scores = qc @ doc_vecs[d0 : d0 + doc_chunk_size].T
            kk = min(k, scores.shape[1])
            if kk < scores.shape[1]:
                part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
            cand_score = np.concatenate([best_score, np.take_along_axis(scores, part, axis=1)], axis=1)
            cand_idx = np.concatenate([best_idx, part + d0], axis=1)
            if cand_idx.shape[1] > k:
                keep = np.argpartition(-cand_score, k - 1, axis=1)[:, :k]
                cand_score = np.take_along_axis(cand_score, keep, axis=1)
                cand_idx = np.take_along_axis(cand_idx, keep, axis=1)
            best_idx, best_score = cand_idx, cand_score
        for row in range(qc.shape[0]):
            # lexsort: last key is primary -> by descending score, then ascending index.
            order = np.lexsort((best_idx[row], -best_score[row]))
            out[start + row] = best_idx[row][order]
    return out


def mine_hard_negatives(
    queries: Sequence[str],
    documents: Sequence[str],
    positives: Sequence[Collection[int]],
    encode: Encoder,
    *,
    negatives_per_query: int = 1,
    skip_top: int = 3,
    depth: int = 30,
    seed: int = 0,
    chunk_size: int = 1024,
    instruction: str = "",
) -> list[list[int]]:
    """For each query, indices into ``documents`` of its mined hard negatives, in rank order.

    ``positives[i]`` holds the document indices never to return for query ``i``. A query gets fewer
    than ``negatives_per_query`` negatives only when the corpus is too small for the window.
    ``instruction`` is handed to encoders that accept it (see :func:`call_encoder`).
    """
    if len(positives) != len(queries):
        raise ValueError(f"{len(positives)} positive sets for {len(queries)} queries")
    if negatives_per_query < 0 or skip_top < 0 or depth < skip_top + negatives_per_query:
        raise ValueError(
            f"need negatives_per_query >= 0, skip_top >= 0 and depth >= skip_top + negatives_per_query "
            f"(got {negatives_per_query}, {skip_top}, {depth})"
        )
    if negatives_per_query == 0 or not queries:
        return [[] for _ in queries]
    q = _check_vectors(call_encoder(encode, list(queries), True, instruction), len(queries), "queries")
    d = _check_vectors(call_encoder(encode, list(documents), False, instruction), len(documents), "documents")
    max_pos = max((len(p) for p in positives), default=0)
    ranked = rank_documents(q, d, depth + max_pos, chunk_size)
    result: list[list[int]] = []
    for i, query in enumerate(queries):
        pos = positives[i]
        window = [int(j) for j in ranked[i] if int(j) not in pos][skip_top:depth]
        if len(window) <= negatives_per_query:
            result.append(window)
            continue
        picked = query_rng(seed, query).choice(len(window), size=negatives_per_query, replace=False)
        result.append([window[j] for j in sorted(picked.tolist())])
    return result
