"""Fine-tuning configuration: one documented pydantic model for ``medcouncil finetune``.

Precedence is command line > YAML file (``--config finetune.yaml``) > defaults, as for ``EngineConfig``. The
docstring of each field is its documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medcouncil.serving.common.errors import ConfigError
from medcouncil.serving.common.yamlfile import load_with_overrides

Method = Literal["lora", "qlora", "full"]


class FinetuneConfig(BaseModel):
    """How ``medcouncil finetune`` trains a model."""

    model_config = ConfigDict(extra="forbid")

    base: str | None = None
    """HF folder, HF hub id, or GGUF file (dequantised to an HF folder once, cached). None: the embedded Gemma 3
    270M GGUF."""
    data: str | None = None
    """Chat-format JSONL (``messages``; loss on assistant turns only) or any dataset ``medcouncil bench`` loads
    (registered name, path, HF id): question + options -> the answer line."""
    limit: int | None = Field(default=None, ge=1)
    """A dataset's first N items (``data`` as a dataset)."""
    subset: str | None = None
    """A dataset's subset (MedQA step, MMLU subject, KorMedMCQA exam, HF config)."""
    split: str | None = None
    """A Hugging Face dataset's split."""
    data_dir: Path | None = None
    """Where registered datasets live (``--data-dir``; default: env ``MEDCOUNCIL_DATA_DIR``, ./data, ../shared/data)."""
    fields: str | None = None
    """Field mapping for a generic JSONL/CSV file, as ``medcouncil bench --fields``."""
    out: Path = Path("adapters/finetune")
    """Output folder: the adapter (or full model), ``run.json``, ``report.html``, ``checkpoints/``."""
    method: Method = "lora"
    """``lora`` (default), ``qlora`` (bitsandbytes 4-bit base; CUDA only) or ``full`` (every weight; small models)."""
    lora_r: int = Field(default=16, ge=1)
    """LoRA rank."""
    lora_alpha: int = Field(default=32, gt=0)
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear layers that get adapters (module name suffixes)."""
    learning_rate: float = Field(default=2e-4, gt=0)
    """Peak learning rate (AdamW), after a linear warm-up, then linear decay to 0."""
    warmup_steps: int = Field(default=0, ge=0)
    """Optimizer steps of linear warm-up."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW weight decay."""
    epochs: float = Field(default=1.0, gt=0)
    """Passes over the training set (ignored when ``max_steps`` is set)."""
    max_steps: int | None = Field(default=None, ge=1)
    """Optimizer steps to run; overrides ``epochs``."""
    batch_size: int = Field(default=4, ge=1)
    """Examples per forward pass."""
    grad_accum: int = Field(default=1, ge=1)
    """Forward passes per optimizer step and process (global batch = batch_size x grad_accum x processes)."""
    global_batch: int | None = Field(default=None, ge=1)
    """Examples per optimizer step across every process; sets ``grad_accum`` to global_batch / (batch_size x
    processes), so the same run (the same micro-batches, the same weights) is had on any number of processes that
    divides it. None: ``grad_accum`` as given."""
    fsdp: bool = False
    """Shard the weights, gradients and optimizer states across the launched processes (PyTorch FSDP, per decoder
    layer): full fine-tuning of a model that does not fit one device. ``--method full`` under ``torchrun`` or
    ``accelerate launch``; without it, several processes train by DDP (a whole copy each)."""
    deepspeed: Path | None = None
    """A DeepSpeed config (JSON or YAML; ``zero_optimization`` stage 1-3, offload, ``bf16``…) to train under
    DeepSpeed ZeRO instead of DDP or FSDP; its batch keys come from ``batch_size`` and the global batch, its optimizer
    and schedule from these settings. Needs ``medcouncil[deepspeed]``; checkpoints resume on the same number of
    processes."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% more time."""
    max_seq_len: int = Field(default=512, ge=16)
    """Longer examples are cut (from the left of the prompt, keeping the answer) and counted in the run card."""
    seed: int = 0
    """Seed of the data order, the held-out slice, LoRA initialisation and dropout."""
    eval_fraction: float = Field(default=0.05, ge=0, lt=1)
    """Share of examples held out for eval loss (at least one when > 0 and there are 2+ examples)."""
    eval_every: int = Field(default=50, ge=1)
    """Eval loss every N optimizer steps (and at the end)."""
    save_every: int = Field(default=100, ge=1)
    """Checkpoint every N optimizer steps (and on Ctrl-C); ``--resume`` continues from the latest."""
    keep_checkpoints: int = Field(default=2, ge=1)
    """Finished checkpoints kept on disk (older ones are removed only after a newer one is complete)."""
    merge: bool = False
    """Also write the merged HF model to ``OUT/merged`` (LoRA)."""
    threads: int | None = Field(default=None, ge=1)
    """torch CPU threads; None: every core."""
    objective: Literal["sft", "dpo", "grpo"] = "sft"
    """``sft``: next-token loss on the answers; ``dpo``: direct preference optimisation on chosen/rejected pairs
    (``finetune --method dpo``); ``grpo``: group relative policy optimisation with verifiable rewards on MCQA
    (``finetune --method grpo``). DPO and GRPO are LoRA only: their reference is the base with the adapter off."""
    beta: float = Field(default=0.1, gt=0)
    """DPO's β (how far the tuned model may move from the reference)."""
    group_size: int = Field(default=4, ge=2)
    """GRPO: completions sampled per prompt (the group its advantages are standardised in)."""
    kl_weight: float = Field(default=0.04, ge=0)
    """GRPO: weight of the KL penalty to the reference."""
    max_new_tokens: int = Field(default=96, ge=1)
    """GRPO: longest sampled completion."""
    temperature: float = Field(default=1.0, gt=0)
    """GRPO: sampling temperature."""
    decontaminate: bool = True
    """DPO, GRPO: drop the pairs or items whose prompt is in a local evaluation set (as ``data build`` does). Kept
    in the run card, so a resume decontaminates as the run did (the data fingerprint covers what it dropped)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weights' compute type; float32 on CPU (bf16 matmuls are slow on most CPUs), bfloat16 on recent GPUs."""

    @model_validator(mode="after")
    def _consistent(self) -> FinetuneConfig:
        if self.global_batch is not None and self.grad_accum != 1:
            raise ValueError("give global_batch or grad_accum, not both: global_batch sets grad_accum per process")
        if self.global_batch is not None and self.global_batch % self.batch_size:
            raise ValueError(f"global_batch {self.global_batch} is not a multiple of batch_size {self.batch_size}")
        if not self.target_modules and self.method != "full":
            raise ValueError("target_modules is empty: name at least one linear layer (e.g. q_proj)")
        if self.objective != "sft" and self.method == "full":
            raise ValueError(
                f"objective {self.objective} needs a LoRA method: its reference is the base with the adapter off"
            )
        return self

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> FinetuneConfig:
        """Defaults, then the YAML file, then the overrides that are set."""
        return load_with_overrides(cls, path, overrides, "finetune config")

    def accumulation(self, processes: int = 1) -> int:
        """Micro-batches each process accumulates per optimizer step.

        Raises:
            ConfigError: ``global_batch`` is not a multiple of ``batch_size`` x ``processes``.
        """
        if self.global_batch is None:
            return self.grad_accum
        share = self.batch_size * processes
        if self.global_batch % share:
            raise ConfigError(
                f"--global-batch {self.global_batch} is not a multiple of --batch-size {self.batch_size} x "
                f"{processes} process{'es' if processes > 1 else ''} ({share}): choose a global batch, batch size "
                f"and process count that divide evenly"
            )
        return self.global_batch // share

    def training_fields(self, processes: int = 1) -> dict[str, Any]:
        """The fields that decide the weights (a resumed run must match them). ``grad_accum`` is the micro-batches of
        an optimizer step across every process, so that a run resumed on another number of processes matches."""
        # SFT runs keep the fields they had before DPO existed, so that their checkpoints still resume
        grpo = {"group_size", "kl_weight", "max_new_tokens", "temperature"}
        preference = {"dpo": grpo, "grpo": {"beta"}}.get(self.objective, {"objective", "beta", *grpo})
        fields = self.model_dump(
            mode="json",
            exclude={
                "out",
                "merge",
                "threads",
                "eval_every",
                "save_every",
                "keep_checkpoints",
                "data_dir",
                "global_batch",
                "fsdp",
                "deepspeed",
                "decontaminate",  # the data fingerprint covers what it dropped
                *preference,
            },
        )
        fields["grad_accum"] = self.accumulation(processes) * processes
        return fields
