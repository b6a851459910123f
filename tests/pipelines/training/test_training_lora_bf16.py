"""LoRA in bf16 without PEFT's float32 round trip of the adapter inputs: identical logits and gradients, and a
run that starts at ln 2 and learns."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_runs import (
    run_in_process,
    tiny_run_inputs_fixture,  # noqa: F401 (registers the `tiny_run_inputs` fixture)
)


def _lora_bf16_model(root: Path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.bfloat16)
    # random B, so the adapters change the output; PEFT keeps their weights in float32 over the bf16 base
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def test_adapter_inputs_skip_the_float32_round_trip_with_identical_results(tiny_run_inputs):
    """Under autocast the adapter matmuls run in bf16 either way: PEFT's cast of each input to float32 (and
    autocast's cast straight back) changes no value, so without it logits and adapter gradients are equal."""
    import torch

    from edu_bias_pipeline.dpo.model import skip_adapter_input_casts

    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))

    def forward_backward(model):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        logits.float().logsumexp(-1).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logits.detach(), grads

    model = _lora_bf16_model(tiny_run_inputs)
    with_casts = forward_backward(model)
    assert skip_adapter_input_casts(model) > 0
    without = forward_backward(model)
    assert torch.equal(with_casts[0], without[0])
    assert with_casts[1].keys() == without[1].keys() and len(without[1]) > 0
    for name, grad in with_casts[1].items():
        assert grad.dtype == torch.float32 and torch.equal(grad, without[1][name]), name


def test_lora_in_bf16_trains_with_adapter_input_casts_off(tiny_run_inputs):
    """The stage's LoRA run in bf16 (CPU autocast here, CUDA on a GPU): the adapted layers take their inputs
    as they are throughout training, and the run starts where DPO must (loss ln 2) and learns."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import TrainerCallback

    casting = []

    class Watch(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
            casting.append((len(layers), sum(m.cast_input_dtype_enabled for m in layers)))

    m = run_in_process(
        tiny_run_inputs,
        "lora_bf16",
        precision="bf16",
        callbacks=[Watch()],
        lora={"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
        eval_strategy="no",
    )
    assert casting and all(n > 0 and enabled == 0 for n, enabled in casting)
    losses = [h["loss"] for h in m["history"] if "loss" in h and "eval_loss" not in h]
    assert losses[0] == pytest.approx(0.6931, abs=2e-3)
    assert m["train"]["rewards/accuracies"] > 0.5
