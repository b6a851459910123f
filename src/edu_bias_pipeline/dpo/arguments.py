"""`trl.DPOConfig` for a run, built from the validated `TrainingConfig` and what the node resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import RuntimeSpec

# TrainingConfig fields that DPOConfig takes under the same name with the same meaning.
DPO_CONFIG_FIELDS = (
    "beta",
    "max_length",
    "learning_rate",
    "lr_scheduler_type",
    "weight_decay",
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "gradient_checkpointing",
    "seed",
    "logging_steps",
    "eval_steps",
    "save_strategy",
    "save_steps",
    "save_total_limit",
    "dataloader_num_workers",
    "trust_remote_code",
    "precompute_ref_log_probs",
    "precompute_ref_batch_size",
    "train_sampling_strategy",
    "torch_compile",
)


def dpo_config_kwargs(config: TrainingConfig, runtime: RuntimeSpec, has_val: bool) -> dict[str, Any]:
    """Keyword arguments of `trl.DPOConfig` for this run: the config's own fields, what the node resolved
    (precision, device, DeepSpeed), the project's fixed choices, then `extra_training_args` over all."""
    kwargs = config.model_dump(include=set(DPO_CONFIG_FIELDS))
    kwargs.update(
        output_dir=str(Path(config.output_dir)),
        loss_type=list(config.loss_type),
        # transformers 5 has no warmup_ratio: it reads a warmup_steps below 1 as a share of the steps
        warmup_steps=config.warmup_ratio,
        eval_strategy=config.eval_strategy if has_val else "no",
        report_to="none" if config.report_to == "none" else [config.report_to],
        run_name=config.run_name or Path(config.output_dir).name,
        bf16=runtime.precision == "bf16",
        fp16=runtime.precision == "fp16",
        use_cpu=runtime.use_cpu,
        deepspeed=runtime.deepspeed_config,
        logging_first_step=True,
        # probe_batch_size (batch_size.fit_batch_size) instead of transformers' retry after an out-of-memory
        # error, which keeps the failed attempt's weight updates
        auto_find_batch_size=False,
        # liger_kernels: applied by model.load_model before the reference pass, not by the Trainer at train()
        use_liger_kernel=False,
        # every parameter takes part in the loss (full model or adapter): skip DDP's unused-parameter scan
        ddp_find_unused_parameters=False,
    )
    kwargs.update(config.extra_training_args)
    return kwargs
