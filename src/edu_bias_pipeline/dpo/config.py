"""Typed training configuration: parameters → env-var overrides → validated `TrainingConfig`.

Configuration flows one way. The Kedro node hands `resolve_training_config` the `training:` parameters
and a snapshot of the environment; the result is validated here, before anything is launched, and
written as JSON for the launched process (`entry.py`), which never reads env vars of its own.

Precedence, lowest first, each layer the way Kedro users know it:
1. the field defaults below;
2. `training:` in `conf/base/parameters_training.yml` (tuned for the embedded tiny model);
3. `training:` of the run's environment (`kedro run --env optimized`, `--env gpu`, `--env qwen2_7b`), which
   replaces the base's whole block (Kedro's merge of an environment's top-level key);
4. `kedro run --params training.x=y`, merged key by key;
5. the old scripts' env vars (`ENV_OVERRIDES`): `TRAIN_MODE`, `MODEL_NAME_OR_PATH`, `TRAIN_DATASETS`,
   `OUTPUT_DIR`.
A null anywhere means "unset": the field keeps its default. `training.sources` logs where each value came
from.

Each field carries a `description`, in the manner of TRL's `dpo_config.py`, so
`TrainingConfig.model_json_schema()`
documents every option.

Kept free of heavy imports: validation happens in the Kedro process, before torch is needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edu_bias_pipeline.dpo.tiny_model import EMBEDDED_MODEL_NAME
from edu_bias_pipeline.pairs import DEFAULT_INSTRUCTION
from edu_bias_pipeline.params import format_validation_error

logger = logging.getLogger(__name__)

Mode = Literal["single", "accelerate", "deepspeed"]

# The sentinel `model_name_or_path` meaning "build the embedded tiny model from the training texts".
EMBEDDED_MODEL = EMBEDDED_MODEL_NAME

# Old shell-script interface: env var → config field. Applied by the node (resolve_training_config) only.
ENV_OVERRIDES = {
    "TRAIN_MODE": "mode",
    "MODEL_NAME_OR_PATH": "model_name_or_path",
    "TRAIN_DATASETS": "train_datasets",  # comma-separated JSONL paths, replacing the train split
    "OUTPUT_DIR": "output_dir",
}

# Settings that earlier releases took and that now live elsewhere: the key, and what to do instead.
MOVED_KEYS = {
    "profile": "profiles are Kedro configuration environments now: drop training.profile and select one with "
    "`kedro run --env optimized` (conf/optimized/) or `--env gpu` (conf/gpu/); without --env, conf/base's "
    "tiny-model settings apply. See docs/stages/training.md",
    "auto_find_batch_size": "renamed training.probe_batch_size: it probes the batch once before training, "
    "unlike transformers' auto_find_batch_size, which retries after running out of memory mid-training",
    "use_liger_kernel": "renamed training.liger_kernels: unlike transformers' use_liger_kernel it also "
    "accepts `auto` and applies the kernels before the reference pass",
}
# Fields hashed into a run's fingerprint under the names earlier releases gave them, so that a run they
# interrupted resumes instead of starting afresh.
FINGERPRINT_NAMES = {"probe_batch_size": "auto_find_batch_size", "liger_kernels": "use_liger_kernel"}

# The profile names earlier releases hashed into a run's fingerprint (`TrainingConfig.earlier_fingerprints`).
EARLIER_PROFILE_NAMES = ("optimized", "gpu")


class TrainingConfigError(click.ClickException, ValueError):
    """A training configuration that cannot run; raised before any process is launched.

    A click exception, so `kedro run` prints the message alone (no traceback) and exits with 1."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Strict):
    enabled: bool = Field(False, description="Train a LoRA adapter (PEFT) instead of all weights.")
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (lora_alpha).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules to adapt: a list of names or PEFT's 'all-linear'."
    )
    qlora: bool = Field(
        False,
        description="Load the base model in 4-bit (bitsandbytes NF4) and train LoRA on top (QLoRA). "
        "CUDA only; "
        "implies `enabled`.",
    )
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit quantisation type for QLoRA."
    )


class DeepSpeedSettings(_Strict):
    zero_stage: Literal[2, 3] = Field(
        2, description="ZeRO stage: 2 shards optimizer+gradients, 3 also the weights."
    )
    offload_optimizer: bool = Field(False, description="Offload optimizer states to CPU memory.")
    overlap_comm: bool = Field(
        True,
        description="Reduce each full gradient bucket while the backward pass goes on (DeepSpeed "
        "`overlap_comm`). Costs a second bucket buffer: reduce_bucket_size elements, 1 GB in bf16 at the "
        "ZeRO-2 default.",
    )
    contiguous_gradients: bool | Literal["auto"] = Field(
        True,
        description="Copy each gradient into the reduction bucket inside its per-parameter hook (DeepSpeed "
        "`contiguous_gradients`, its default); off, a hook only files the gradient and the bucket is "
        "flattened once when it is reduced, which costs less host time. `auto` (conf/gpu) is off under "
        "ZeRO-2 without optimizer offload and on otherwise: ZeRO-3's large models rely on the buffer against "
        "memory fragmentation, and offload_optimizer keeps it whatever is asked.",
    )
    foreach_grad_norm: bool = Field(
        False,
        description="ZeRO-2: take the gradient norm (for clipping and the logged grad_norm) in DeepSpeed's "
        "float64 with a few multi-tensor kernels instead of a copy and a norm kernel per gradient tensor; "
        "turn it on where those launches cost GPU time (conf/gpu). Optimizer offload and model parallelism "
        "keep DeepSpeed's own norm.",
    )
    reduce_bucket_size: int | Literal["auto"] | None = Field(
        None,
        description="Elements per gradient-reduction bucket. Unset: DeepSpeed's 5e8 under ZeRO-2 and the "
        "Trainer's `auto` (hidden_size²) under ZeRO-3. `auto` under ZeRO-2 gives a 0.5B model "
        "~600 reductions a step.",
    )
    check_grad_overflow: bool = Field(
        True,
        description="ZeRO-2 in bf16: check the gradients for inf/NaN before each optimizer step and skip the "
        "step if one is found, as DeepSpeed does, at the cost of small kernels per gradient tensor and a "
        "blocking sync a step. Turn it off for throughput (conf/gpu): a bf16 run then steps as `single` and "
        "`accelerate` do, and the health check still reports a NaN loss. ZeRO-3 never checks bf16 "
        "gradients; fp16 is always checked (loss scaling needs it).",
    )
    offload_param: bool = Field(False, description="Offload parameters to CPU memory (ZeRO-3 only).")
    launcher: Literal["accelerate", "deepspeed"] = Field(
        "accelerate",
        description="How to start the processes: `accelerate launch --use_deepspeed` or the `deepspeed` "
        "launcher.",
    )
    config_file: str | None = Field(
        None,
        description="A DeepSpeed JSON config to use as is instead of the one generated from these settings.",
    )

    @model_validator(mode="after")
    def _offload_param_needs_zero3(self) -> DeepSpeedSettings:
        if self.offload_param and self.zero_stage != 3:
            raise ValueError("deepspeed.offload_param needs deepspeed.zero_stage: 3")
        return self


class LaunchSettings(_Strict):
    num_processes: int = Field(
        1, ge=1, description="Total processes (GPUs) across all machines for accelerate/deepspeed modes."
    )
    num_machines: int = Field(1, ge=1, description="Number of machines (nodes).")
    machine_rank: int = Field(0, ge=0, description="Rank of this machine (multi-node; 0 runs Kedro).")
    main_process_ip: str | None = Field(None, description="Address of the rank-0 machine (multi-node).")
    main_process_port: int = Field(29500, ge=1, le=65535, description="Rendezvous port.")
    hostfile: str | None = Field(
        None, description="DeepSpeed hostfile (`host slots=N` lines) for multi-node deepspeed runs."
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Extra launcher arguments, appended before the module to run."
    )
    no_ssh: bool = Field(
        False,
        description="Multi-node DeepSpeed: every machine starts its own launcher for its machine_rank (as "
        "under Slurm's srun) instead of the rank-0 launcher reaching the others over pdsh/ssh.",
    )


class HealthSettings(_Strict):
    warmup_fraction: float = Field(
        0.3, ge=0.0, lt=1.0, description="Share of the logged steps ignored by the health checks (warm-up)."
    )
    stuck_loss_tolerance: float = Field(
        0.005,
        gt=0.0,
        description="A loss within this distance of ln 2 ≈ 0.693 after warm-up counts as stuck.",
    )


class TrainingConfig(_Strict):
    """Everything the training stage needs; serialised to JSON for the launched process."""

    mode: Mode = Field("single", description="Hardware mode: single | accelerate | deepspeed.")
    model_name_or_path: str = Field(
        EMBEDDED_MODEL,
        description=f"Policy/reference model: a local directory, a hub id, or `{EMBEDDED_MODEL}` for the "
        "embedded tiny model built from the training texts.",
    )
    trust_remote_code: bool = Field(False, description="Allow model code shipped with the checkpoint.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="auto: the GPUs when CUDA is available, else the CPU; cpu: the CPU even on a GPU host; "
        "cuda: GPUs or fail before launch.",
    )
    base_model_dir: str = Field(
        "data/06_models/base_model", description="Where the embedded tiny model is built and cached."
    )
    output_dir: str = Field(
        "data/06_models/dpo_model", description="Checkpoints, logs and the `final/` model or adapter."
    )
    train_datasets: list[str] = Field(
        default_factory=list,
        description="JSONL files to train on instead of the train split (raw pair or split format).",
    )
    instruction: str = Field(
        DEFAULT_INSTRUCTION,
        description="User turn for pairs without their own `prompt` (pairs.render_prompt).",
    )
    max_length: int = Field(
        512, gt=0, description="Maximum prompt+completion tokens; longer pairs are truncated."
    )

    beta: float = Field(0.1, gt=0.0, description="DPO beta (deviation from the reference model).")
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"], description="TRL DPO loss type(s).")
    learning_rate: float = Field(1e-6, gt=0.0, description="Peak learning rate (AdamW).")
    lr_scheduler_type: str = Field("linear", description="transformers scheduler name.")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Share of steps for linear warm-up.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    num_train_epochs: float = Field(1.0, gt=0.0, description="Training epochs (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Optimizer steps to run; -1 means use num_train_epochs.")
    per_device_train_batch_size: int = Field(1, ge=1, description="Pairs per device per step.")
    per_device_eval_batch_size: int = Field(1, ge=1, description="Pairs per device per eval step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="Training precision; `auto` = bf16 on a bf16-capable GPU, fp32 on CPU."
    )
    seed: int = Field(42, description="Seed for model init (LoRA), data order and dropout.")

    logging_steps: int = Field(10, ge=1, description="Log metrics every N optimizer steps.")
    eval_strategy: Literal["no", "steps", "epoch"] = Field(
        "epoch", description="When to evaluate on the val split (overall and per bias_type)."
    )
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps (eval_strategy: steps).")
    eval_per_bias_type: bool = Field(
        True, description="Also evaluate each bias_type of the val split separately."
    )
    save_strategy: Literal["no", "steps", "epoch"] = Field(
        "epoch", description="When to write `checkpoint-N/` (needed for resume)."
    )
    save_steps: int | None = Field(None, ge=1, description="Checkpoint every N steps (save_strategy: steps).")
    save_total_limit: int | None = Field(2, ge=1, description="Keep at most this many checkpoints.")
    resume: bool = Field(
        True, description="Resume from the latest checkpoint when the same configuration was interrupted."
    )
    use_sample_weights: bool = Field(
        True,
        description="Draw training pairs in proportion to their `sample_weight` (only when weights differ).",
    )
    dataloader_num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")

    # Throughput settings: conf/gpu turns them on; docs/performance.md gives what each gained.
    precompute_ref_log_probs: bool = Field(
        False,
        description="Compute the reference model's log-probs once, before training, for the train and val "
        "sets (TRL `precompute_ref_log_probs`): no reference forward per step, and no reference model in "
        "memory for full fine-tuning. The per-bias_type val sets are registered up front so they get theirs.",
    )
    precompute_ref_batch_size: int | None = Field(
        None, ge=1, description="Batch size of the reference pass (default: the train / eval batch size)."
    )
    reference_cache_dir: str | None = Field(
        None,
        description="Where precomputed reference log-probs persist (`ref-<key>/`, keyed by the token "
        "ids, the reference model's weights and the precision/kernels), so later runs on the same data and "
        "reference reuse them; null = not kept beyond the run. Entries can be deleted at any time.",
    )
    train_sampling_strategy: Literal["random", "group_by_length"] = Field(
        "random",
        description="`group_by_length`: batches of similar length (transformers' LengthGroupedSampler, "
        "lengths from TRL's token ids), so little padding is computed. Its groups hold whole optimizer "
        "steps of all ranks, so the ranks of one step get pairs of similar length. Weighted sampling wins "
        "when sample weights differ.",
    )
    probe_batch_size: bool = Field(
        False,
        description="Before training (CUDA, not DeepSpeed), halve per_device_train_batch_size until a step "
        "on the longest pairs fits in 90% of GPU memory; gradient accumulation grows to keep the effective "
        "batch. Use it when the configured batch may not fit the card (a larger model, longer pairs).",
    )
    attn_implementation: str | None = Field(
        None,
        description="Attention kernel for from_pretrained: `sdpa`, `flash_attention_2` (if installed), "
        "`eager`; null = the transformers default.",
    )
    sdpa_backends: list[Literal["flash", "efficient", "cudnn", "math"]] | None = Field(
        None,
        description="Scaled-dot-product-attention kernels torch may use on CUDA (with `attn_implementation: "
        "sdpa`); null = torch's own choice. conf/gpu leaves cuDNN out.",
    )
    liger_kernels: bool | Literal["auto"] = Field(
        False,
        description="Liger's Triton kernels (RMSNorm, SwiGLU, RoPE; TRL keeps its own fused LM-head "
        "log-probs), applied before the reference pass so reference and policy run the same kernels. "
        "`auto` = on when CUDA is used and `liger-kernel` is importable.",
    )
    torch_compile: bool = Field(False, description="torch.compile the model (transformers `torch_compile`).")
    gather_step_metrics: bool = Field(
        True,
        description="Gather TRL's logging metrics (rewards, log-probs, logits, entropy, token counts) across "
        "ranks in every training micro-batch, as TRL does, with blocking reads that make each rank wait for "
        "the slowest. False (TRL 1.16; other versions gather) keeps them on each rank until a logging step, "
        "where one all-reduce averages them: use it with several processes (conf/gpu). Loss, gradients, "
        "rewards and log-probs are unchanged; entropy, mean logits and token accuracy become the mean of "
        "each rank's token-weighted figure.",
    )

    report_to: Literal["none", "tensorboard", "wandb"] = Field(
        "none", description="Experiment tracking: wandb (offline unless WANDB_API_KEY), tensorboard or none."
    )
    wandb_project: str = Field("edu-bias-dpo", description="wandb project name.")
    run_name: str | None = Field(None, description="Tracking run name (defaults to the output dir name).")

    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA / QLoRA settings.")
    deepspeed: DeepSpeedSettings = Field(default_factory=DeepSpeedSettings, description="DeepSpeed settings.")
    launch: LaunchSettings = Field(default_factory=LaunchSettings, description="Process / machine layout.")
    health: HealthSettings = Field(default_factory=HealthSettings, description="Training-health checks.")
    extra_training_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Further `trl.DPOConfig` keyword arguments, passed through unchanged (escape hatch).",
    )

    @field_validator("train_datasets", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value if value is not None else []

    @field_validator("eval_strategy", "save_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        # YAML 1.1 and `kedro run --params` read a bare `no` as false.
        return "no" if value is False else value

    @field_validator("loss_type", mode="before")
    @classmethod
    def _loss_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or a positive number of steps")
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("eval_strategy 'steps' needs eval_steps")
        if self.save_strategy == "steps" and not self.save_steps:
            raise ValueError("save_strategy 'steps' needs save_steps")
        if self.lora.qlora and not self.lora.enabled:
            self.lora.enabled = True
        return self

    @property
    def is_embedded_model(self) -> bool:
        return self.model_name_or_path == EMBEDDED_MODEL

    def fingerprint(self, *data_digests: str) -> str:
        """Identity of a training run: same config and same data → same fingerprint → resume allowed."""
        return self._hash(self._fingerprint_payload(), data_digests)

    def earlier_fingerprints(self, *data_digests: str) -> tuple[str, ...]:
        """The fingerprints releases with `training.profile` gave these same settings: they hashed the name of
        the profile that supplied them too. A run they interrupted resumes instead of starting afresh."""
        payload = self._fingerprint_payload()
        return tuple(self._hash({**payload, "profile": name}, data_digests) for name in EARLIER_PROFILE_NAMES)

    def _fingerprint_payload(self) -> dict[str, Any]:
        # Fields at their default are left out, so a release that adds a setting does not make every
        # interrupted run look like another configuration (which starts afresh and deletes its checkpoints).
        # What is only logged (where, under which name, how step metrics meet across ranks) is left out too,
        # and so is where DeepSpeed stages the gradients before reducing them and which kernels take their
        # norm.
        payload = self.model_dump(
            mode="json",
            exclude={
                **dict.fromkeys(
                    ("resume", "report_to", "run_name", "wandb_project", "gather_step_metrics"), True
                ),
                "deepspeed": {"contiguous_gradients": True, "foreach_grad_norm": True},
            },
            exclude_defaults=True,
        )
        # a group left with nothing but what is excluded is a group at its defaults
        return {FINGERPRINT_NAMES.get(key, key): value for key, value in payload.items() if value != {}}

    @staticmethod
    def _hash(payload: dict[str, Any], data_digests: tuple[str, ...]) -> str:
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
        for item in data_digests:
            digest.update(item.encode())
        return digest.hexdigest()[:16]


def _format_validation_error(exc: ValidationError, env_vars: list[str]) -> str:
    set_by = {ENV_OVERRIDES[var]: f"env var {var}" for var in env_vars}
    return format_validation_error(exc, TrainingConfig, "training", MOVED_KEYS, set_by)


# Fields holding a settings model (`lora`, `deepspeed`, `launch`, `health`).
SETTINGS_GROUPS = tuple(
    name
    for name, info in TrainingConfig.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, _Strict)
)


def _drop_nulls(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def apply_env_overrides(
    params: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The old scripts' env vars over the parameters; returns the merged dict and the names that applied."""
    merged = dict(params)
    applied = []
    for var, field_name in ENV_OVERRIDES.items():
        value = environ.get(var)
        if value is not None and value.strip() != "":
            merged[field_name] = value.strip()
            applied.append(var)
    return merged, applied


def resolve_training_config(
    params: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
    *,
    check_model: bool = True,
) -> TrainingConfig:
    """Parameters ← env vars, validated. Raises `TrainingConfigError` with every problem listed."""
    params = dict(params or {})
    environ = {} if environ is None else environ
    values, applied = apply_env_overrides(_drop_nulls(params), environ)
    if applied:
        logger.info("Training parameters overridden from the environment: %s", ", ".join(applied))
    for key in SETTINGS_GROUPS:
        if isinstance(values.get(key), Mapping):
            values[key] = _drop_nulls(values[key])
    try:
        config = TrainingConfig.model_validate(values)
    except ValidationError as exc:
        raise TrainingConfigError(_format_validation_error(exc, applied)) from None
    if check_model:
        check_model_available(config, environ)
    for path in config.train_datasets:
        if not Path(path).is_file():
            raise TrainingConfigError(f"training.train_datasets: file not found: {path}")
    return config


def looks_like_hub_id(name: str) -> bool:
    """`org/name` or `name`: what the hub accepts as a repo id (a longer or dotted path is a local one)."""
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and not os.path.isabs(name)


def check_model_available(config: TrainingConfig, environ: Mapping[str, str]) -> None:
    """A missing local model (or an uncached hub id while offline) fails here, not minutes into a launch."""
    name = config.model_name_or_path
    if config.is_embedded_model or Path(name).exists():
        return
    if not looks_like_hub_id(name):
        raise TrainingConfigError(f"training.model_name_or_path: model directory not found: {name}")
    offline = str(environ.get("HF_HUB_OFFLINE", "")).lower() in ("1", "true", "yes")
    if offline:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise TrainingConfigError(
                f"training.model_name_or_path: {name!r} is neither a local directory nor in the Hugging Face "
                "cache, "
                "and the hub is offline (HF_HUB_OFFLINE=1). Download it first or point to a local directory."
            )
