"""ZeRO-1/2's gradient norm in a few multi-tensor kernels (`deepspeed.foreach_grad_norm`).

DeepSpeed's `DeepSpeedZeroOptimizer.get_grad_norm_direct` takes the norm of its gradient partition one
tensor at a time: a float64 copy and a norm kernel per tensor of the rank's partition, about 580 launches a
step over both ranks of a 0.5B Qwen2 (290 tensors). Where the step is bound by the host issuing kernels, as
0.5B on an H200 is, those launches are wall time. This computes the same L2 norm with `torch._foreach_norm`
(the kernels `clip_grad_norm_` uses) in DeepSpeed's norm precision (float64 where the device has it): on a GPU
a few launches for all tensors, on a CPU one C++ loop instead of a Python one. Anything else (another norm
type, model or pipeline parallelism) goes to DeepSpeed's own method. The norm is still read by the host every
step: DeepSpeed's clipping checks it for inf/NaN, and accelerate hands it to the Trainer as a float.
"""

from __future__ import annotations

import logging
import types

from edu_bias_pipeline import patches

logger = logging.getLogger("edu_bias_pipeline.dpo")


def install(optimizer, installed: dict[str, str] | None = None) -> bool:
    """Give this ZeRO-1/2 optimizer (or the accelerate wrapper around it) the multi-tensor norm.

    Returns whether it was installed: not for ZeRO-3, offload (DeepSpeed takes that norm elsewhere), a
    model-parallel setup, or a DeepSpeed other than the one it was checked against (`patches`; `installed`:
    the library versions the guard judges, default those installed).
    """
    if optimizer is None or not patches.applies("zero2_foreach_grad_norm", installed):
        return False
    import torch
    from deepspeed import comm as dist
    from deepspeed.comm import pg_utils
    from deepspeed.runtime.constants import PIPE_REPLICATED
    from deepspeed.runtime.utils import mask_nan_or_inf_with_val_inplace
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer
    from deepspeed.runtime.zero.utils import get_norm_dtype

    # accelerate's wrapper holds the ZeRO optimizer as `.optimizer`, and that holds the torch one the same way
    zero = optimizer
    if not isinstance(zero, DeepSpeedZeroOptimizer):
        zero = getattr(optimizer, "optimizer", None)
    if not isinstance(zero, DeepSpeedZeroOptimizer):
        return False
    if zero.cpu_offload or zero.mpu is not None or pg_utils.is_parallel(zero.model_parallel_group):
        return False
    if any(getattr(p, PIPE_REPLICATED, False) for group in zero.bit16_groups for p in group):
        return False
    deepspeed_norm = type(zero).get_grad_norm_direct

    def get_grad_norm_direct(self, gradients, params, norm_type=2):
        if float(norm_type) != 2.0:
            return deepspeed_norm(self, gradients, params, norm_type)
        # DeepSpeed pairs the partition's gradients, padding left out, with its parameters in order
        grads = [g for g in gradients if not getattr(g, "_zero_padding", False)][: len(params)]
        if grads:
            norms = torch._foreach_norm(grads, 2, dtype=get_norm_dtype())
            total = torch.stack(norms).square().sum().float()
        else:
            total = torch.zeros((), dtype=torch.float32, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=self.dp_process_group)
        total = total.sqrt()
        mask_nan_or_inf_with_val_inplace(total, device=self.device)
        return total

    zero.get_grad_norm_direct = types.MethodType(get_grad_norm_direct, zero)
    return True


def callback():
    """A TrainerCallback that installs the norm once the Trainer has built the DeepSpeed engine."""
    from transformers import TrainerCallback

    class ForeachGradNorm(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            if install(optimizer):
                logger.info("ZeRO gradient norm: multi-tensor kernels (deepspeed.foreach_grad_norm)")
            else:
                logger.info(
                    "deepspeed.foreach_grad_norm: not used with ZeRO-3, optimizer offload, model "
                    "parallelism or another DeepSpeed release; DeepSpeed's own norm runs"
                )

    return ForeachGradNorm()
