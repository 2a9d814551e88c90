"""The training config (``harness train CONFIG``): one strict pydantic model read from YAML.

Defaults are the E5-mistral recipe (LoRA r=16 on all linear layers, last-token pooling with an
explicit EOS, InfoNCE at temperature 0.02 over in-batch and hard negatives, instruction template
on queries only); every field a user may want to change for another base model is here, and an
unknown field is an error with the closest valid name rather than a silently ignored typo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inputio import field_problem, read_yaml_mapping
from trainers.data.spec import DataSpec
from trainers.errors import TrainInputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSpec(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class DeepSpeedSpec(_Strict):
    stage: Literal[0, 1, 2, 3] = 3
    offload_optimizer: bool = False
    offload_params: bool = False


class TrainConfig(_Strict):
    name: str | None = None
    base_model: str  # hub id | local path | pkg:<module>/<subdir> | a .gguf file
    gguf_file: str | None = None
    revision: str | None = None  # hub base_model only: the commit (or branch/tag) to load
    miner: str | None = None  # model that mines hard negatives (default: the base model itself)
    pooling: Literal["auto", "lasttoken", "mean", "cls"] = "auto"
    instructions: Literal["auto", "e5", "none"] = "auto"  # auto: E5 template for decoders, none for encoders
    lora: LoraSpec | None = Field(default_factory=LoraSpec)  # null: full fine-tune (small encoders)
    data: DataSpec
    temperature: float = Field(0.02, gt=0.0)
    hard_negatives: int = Field(1, ge=0)
    batch_size: int = Field(32, ge=1)
    mini_batch_size: int | None = Field(None, ge=1)  # GradCache: activations of this many texts at a time
    max_steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0.0)
    learning_rate: float = Field(1e-4, gt=0.0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float | None = Field(None, gt=0.0)
    query_max_length: int = Field(128, ge=4)
    passage_max_length: int = Field(256, ge=4)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # Execution settings (trainers.execution): null = auto, chosen for the device (CPU: off; CUDA: on, with as
    # many blocks keeping their activations as free memory allows).
    gradient_checkpointing: bool | None = None
    uncheckpointed_layers: int | None = Field(None, ge=0)  # selective: the first N blocks keep activations (spare memory -> speed)
    compile: bool | None = None  # torch.compile each decoder block (GPU: 1.45x measured; LoRA dropout 0 recommended)
    deepspeed: DeepSpeedSpec | None = None
    seed: int = 42
    save_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)
    merge_adapter: bool = False  # export merged weights instead of the LoRA adapter
    # Dev score during training (trainers.dev): every eval_every steps (and at the last) the model in
    # training is scored on eval_task by the caller's scorer (``harness train`` / ``harness run``: a
    # matrix task entry, scored by the same code as ``harness run``). It changes nothing exported
    # unless select_best, which exports the weights of the best dev score (and so enters the identity).
    eval_every: int | None = Field(None, ge=1)
    eval_task: dict[str, Any] | None = None
    select_best: bool = False
    device: str = "auto"
    output: str | None = None  # default: runs/train/<name>, relative to the working directory
    # experiment trackers that receive metrics.jsonl's numbers (trainers.trackers), as HF TrainingArguments.report_to
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(default_factory=list)

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, value: Any) -> Any:
        """``report_to: tensorboard`` means ``[tensorboard]`` (as in HF TrainingArguments); ``none`` means none."""
        if value is None or value == "none":
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _length(self) -> "TrainConfig":
        if self.max_steps is None and self.epochs is None:
            self.epochs = 1.0
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("give either max_steps or epochs, not both")
        if self.mini_batch_size and self.mini_batch_size > self.batch_size:
            raise ValueError("mini_batch_size must not exceed batch_size")
        if (self.eval_every is None) != (self.eval_task is None):
            raise ValueError("eval_every and eval_task go together: give both (a dev score every N steps on that task) "
                             "or neither")
        if self.select_best and self.eval_every is None:
            raise ValueError("select_best needs a dev score: add eval_every and eval_task")
        if self.eval_every is not None and self.deepspeed is not None and self.deepspeed.stage == 3:
            raise ValueError("a dev score during training runs on one process, and ZeRO-3 partitions the weights over all "
                             "of them: use deepspeed stage 0-2, or drop eval_every")
        if self.batch_size == 1 and self.hard_negatives == 0:
            raise ValueError("batch_size 1 with hard_negatives 0 gives each query one candidate, its own positive: the loss "
                             "is constant and nothing trains; raise batch_size (in-batch negatives) or hard_negatives")
        return self

    def recipe(self) -> dict[str, Any]:
        """The fields that change the trained weights as they are written (``trainers.identity`` adds
        the base model, the data and the pooling by content). See ``EXECUTION`` for what is left out."""
        return self.model_dump(mode="json", exclude=EXECUTION | BY_CONTENT)


# Where and how a run executes, not what it computes: output location, logging and checkpoint
# cadence (a resume is exact whatever the cadence), where metrics are reported, the device, and the
# memory/speed settings whose loss and gradients are those of the plain full batch (GradCache,
# gradient checkpointing, compile). Changing them must neither retrain nor block a resume.
EXECUTION = frozenset({"name", "output", "log_every", "save_every", "report_to", "device", "mini_batch_size",
                       "gradient_checkpointing", "uncheckpointed_layers", "compile", "eval_every", "eval_task"})
# Hashed by what they point to, not as written: the base model (content, resolved pooling), the
# miner and the data (file contents).
BY_CONTENT = frozenset({"base_model", "gguf_file", "revision", "miner", "pooling", "data"})


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config; any problem raises one :class:`TrainInputError`."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise TrainInputError(path, None, "config file does not exist", "pass the path of an existing YAML training config")
    raw = read_yaml_mapping(path, TrainInputError, "start the file with 'base_model:' and 'data:'")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        top_level = len(exc.errors()[0]["loc"]) == 1
        found = field_problem(exc, allowed=list(TrainConfig.model_fields) if top_level else None, docs="docs/training.md")
        raise TrainInputError(path, found.field, found.problem, found.fix) from None


def resolved_dict(config: TrainConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
