"""The launched process's model: precision, attention kernels, LoRA/QLoRA and Liger, set up before TRL.

Everything that changes the model's numerics is done here, before the trainer is built: TRL computes the
reference log-probs at construction, and they must come from the same kernels as the policy's.
"""

from __future__ import annotations

import logging
from typing import Any

from edu_bias_pipeline import patches
from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import RuntimeSpec

logger = logging.getLogger("edu_bias_pipeline.dpo")


def load_model(config: TrainingConfig, runtime: RuntimeSpec, state) -> tuple[Any, Any, bool]:
    """The model to train, the PEFT config for the trainer (None: full fine-tuning) and whether Liger's
    kernels are in it."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(runtime.precision, torch.float32)
    model_kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
    if config.attn_implementation:
        model_kwargs["attn_implementation"] = config.attn_implementation
    peft_config = None
    if config.lora.enabled:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    if config.lora.qlora:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=config.lora.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if runtime.precision == "bf16" else torch.float16,
            bnb_4bit_quant_storage=dtype,
        )
        model_kwargs["device_map"] = {"": state.local_process_index}
    if not runtime.use_cpu:
        select_sdpa_backends(config.sdpa_backends)
    model = AutoModelForCausalLM.from_pretrained(runtime.model_path, **model_kwargs)
    use_liger = resolve_liger(config, runtime)
    if use_liger:
        # Patched before TRL computes the reference log-probs at construction. Patched at train(), as
        # the Trainer does, the cached reference and the policy ran different kernels (step-1 loss 0.686).
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(model, {"fused_linear_cross_entropy": False, "cross_entropy": False})
    if config.lora.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    return model, peft_config, use_liger


def resolve_liger(config: TrainingConfig, runtime: RuntimeSpec) -> bool:
    if config.liger_kernels != "auto":
        return bool(config.liger_kernels)
    import importlib.util

    return not runtime.use_cpu and importlib.util.find_spec("liger_kernel") is not None


SDPA_TOGGLES = {
    "flash": "enable_flash_sdp",
    "efficient": "enable_mem_efficient_sdp",
    "cudnn": "enable_cudnn_sdp",
    "math": "enable_math_sdp",
}


def select_sdpa_backends(backends: list[str] | None) -> None:
    """Allow only these scaled-dot-product-attention kernels in this CUDA process; None: torch's choice."""
    if backends is None:
        return
    import torch

    for name, toggle in SDPA_TOGGLES.items():
        getattr(torch.backends.cuda, toggle)(name in backends)


def skip_adapter_input_casts(model, installed: dict[str, str] | None = None) -> int:
    """Stop PEFT from casting each adapter's input up to the adapter's dtype; returns the layers changed.

    PEFT keeps LoRA weights in float32 over a bf16/fp16 base (a float32 master copy for the optimizer) and
    casts every adapter input to float32. The Trainer runs the forward under autocast, which casts it straight
    back down for the matmul: a full-size copy each way per adapted layer, forward and backward, 17% of the
    GPU time of a 7B LoRA step on an H100. Without LoRA dropout the round trip changes no value
    (bf16 → float32 → bf16 is exact; tested); with dropout the mask is drawn over bf16 instead of float32
    inputs, the same distribution but not the same draws. Weights stay float32. (PEFT's
    `disable_input_dtype_casting` does this as a context manager; the trainer needs it for its whole life.)
    `installed`: the library versions the patch guard judges (default: those installed).
    """
    if not patches.applies("adapter_input_casts", installed):
        return 0
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    return len(layers)
