"""What a generation job's examples depend on, and nothing else: the key of a generate step.

Two configs with equal identities write the same examples from the same response cache, so a step
keyed by the identity is reused whenever it can be and re-run only when its data would change.

In: the seed, the tasks (counts, brainstorm calls and pool sizes), languages, the prompt templates
(set, and each used template's version and content digest), sampling, lengths, the filters (the
contamination sources by the CONTENT of the files the filter reads, so a moved eval folder is the
same identity and one changed byte is another), and the model as the requests name it with the
backend options that shape an answer (response-format mode; local repetition penalty, constrained
decoding, sampler version).

Out: the name, output and cache locations, prices, ``failure.*``, and transport: concurrency,
timeouts, attempts, retry budget, backoff, batch polling and discount, online/batch mode (the same
model answers both), endpoints and the names of the variables holding them or the key. An
endpoint is transport on purpose: the same model behind a proxy answers the same (docs/generators.md
has the caveat for local servers that serve other weights under one name). The local backend's
batch size and thread count are out too: every request is sampled from its own generator, so an
example does not depend on its batch mates (up to float rounding of the logits; see
``generators/backends/local_backend.py``).

``model_env`` enters as the model name it names, never as the variable's name; a local model as
the digest of its file(s), never its path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from contentid import file_digest
from generators.backends.local_backend import SAMPLER_VERSION, local_model_name
from generators.config import GenerationConfig, LocalBackendConfig, OpenAIBackendConfig
from generators.contamination import eval_files
from generators.errors import BackendUnavailableError, GeneratorInputError
from generators.taxonomy import spec
from generators.templates import Template, load_template

IDENTITY_VERSION = 1


def generator_model(cfg: GenerationConfig, source: Path | None = None) -> str:
    """The model name every request of the job carries (and its key): resolved, content-derived for local."""
    if isinstance(cfg.backend, OpenAIBackendConfig):
        return cfg.backend.resolved_model(source)
    try:
        return local_model_name(cfg.backend.model)
    except BackendUnavailableError as exc:
        raise GeneratorInputError(source, "backend.model", str(exc),
                                  "install what it names or point backend.model at a model file or folder") from None


def request_options(backend: OpenAIBackendConfig | LocalBackendConfig) -> dict[str, Any]:
    """Backend settings that change an answer: the pipeline puts them in every request (and its key)."""
    if isinstance(backend, OpenAIBackendConfig):
        return {"response_format": backend.response_format}
    return {"repetition_penalty": backend.repetition_penalty, "constrained": backend.constrained,
            "sampler": SAMPLER_VERSION}


def used_templates(cfg: GenerationConfig) -> list[Template]:
    """The templates a job renders: each counted type's generate template, and its brainstorm one."""
    ids: list[str] = []
    for tt, tcfg in cfg.tasks.items():
        tspec = spec(tt)
        if tspec.two_step and tcfg.count > 0:
            ids.append(f"{cfg.templates}/{tspec.brainstorm_template}")
        ids.append(f"{cfg.templates}/{tspec.generate_template}")
    return [load_template(i) for i in sorted(set(ids))]


def _template_digest(tpl: Template) -> str:
    blob = json.dumps({"system": tpl.system, "user": tpl.user, "runtime": list(tpl.runtime),
                       "placeholders": {k: list(v) for k, v in sorted(tpl.placeholders.items())}},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def contamination_fingerprints(paths: list[Path]) -> list[str]:
    """Content digests of every file the contamination filter reads under ``paths`` (sorted: the set
    of eval strings decides a reject, not where the files are or in which order they are listed)."""
    return sorted(file_digest(f) for f in eval_files(paths))


def generation_identity(cfg: GenerationConfig, source: Path | None = None) -> dict[str, Any]:
    """Everything that determines a job's examples, as canonical JSON-ready data (see the module docstring)."""
    b = cfg.backend
    backend: dict[str, Any] = {"kind": b.kind, "model": generator_model(cfg, source), **request_options(b)}
    return {
        "identity_version": IDENTITY_VERSION,
        "seed": cfg.seed,
        "backend": backend,
        "tasks": {tt.value: t.model_dump(mode="json") for tt, t in sorted(cfg.tasks.items(), key=lambda kv: kv[0].value)},
        # In the config's order: the sampler draws over the weights in that order, so it changes the draws.
        "languages": cfg.languages if isinstance(cfg.languages, str) else [[c, w] for c, w in cfg.languages.items()],
        "templates": {"set": cfg.templates,
                      "used": {t.id: {"version": t.version, "sha256": _template_digest(t)} for t in used_templates(cfg)}},
        "sampling": cfg.sampling.model_dump(mode="json"),
        "lengths": cfg.lengths.model_dump(mode="json"),
        "filters": {**cfg.filters.model_dump(mode="json", exclude={"contamination"}),
                    "contamination": contamination_fingerprints(cfg.filters.contamination)},
    }


def identity_sha256(identity: dict[str, Any]) -> str:
    """sha256 of the identity's canonical JSON (what the manifest records in place of a file hash)."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
