"""The gpu environment's ZeRO-2 settings train exactly like DeepSpeed's defaults: two ZeRO-2 ranks on CPU,
the same losses, gradient norms and trained weights with each setting off and on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_runs import (
    deepspeed_run,
    tiny_run_inputs_fixture,  # noqa: F401 (registers the `tiny_run_inputs` fixture)
)


def _two_zero2_ranks(tiny_run_inputs, run_dir: Path, **extra):
    """Three ZeRO-2 steps on two CPU ranks (gpu profile, fp32): the launcher's output, the logged (loss,
    grad_norm) of each step and the trained weights."""
    from safetensors.torch import load_file

    run_dir.mkdir()
    proc, out = deepspeed_run(
        tiny_run_inputs,
        run_dir,
        2,
        "fp32",
        nproc=2,
        max_steps=3,
        logging_steps=1,
        per_device_train_batch_size=4,
        **extra,
    )
    assert "training process 1/2" in proc.stderr
    metrics = json.loads((out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    logged = [(h["loss"], h["grad_norm"]) for h in metrics["history"] if "loss" in h]
    return proc, logged, load_file(str(out / "final/model.safetensors"))


def _assert_trained_alike(tiny_run_inputs, first, second) -> None:
    """The same logged losses and gradient norms, and the same trained weights, after weights moved."""
    from safetensors.torch import load_file

    (logged_1, weights_1), (logged_2, weights_2) = first, second
    assert len(logged_1) == 3 and all(isinstance(norm, float) and norm > 0 for _, norm in logged_1)
    for (loss_1, norm_1), (loss_2, norm_2) in zip(logged_1, logged_2, strict=True):
        assert loss_1 == pytest.approx(loss_2, rel=1e-6)
        assert norm_1 == pytest.approx(norm_2, rel=1e-5)
    initial = load_file(str(tiny_run_inputs / "model/model.safetensors"))
    assert [name for name in initial if not initial[name].equal(weights_1[name])]  # the weights trained
    for name, tensor in weights_1.items():
        assert (tensor - weights_2[name]).abs().max().item() <= 1e-6, name


@pytest.mark.slow
def test_zero2_without_the_contiguous_gradient_buffer_trains_the_same(tiny_run_inputs, tmp_path):
    """The gpu profile turns DeepSpeed's `contiguous_gradients` off under ZeRO-2 (each gradient hook then
    only files the gradient; the bucket is flattened once when reduced). Two ZeRO-2 ranks on CPU, three steps,
    with it off and on: the same logged losses and gradient norms (a sum where the mean belongs would double
    them) and the same trained weights, so the gradients were reduced alike."""
    runs = {}
    for contiguous in (False, True):
        run_dir = tmp_path / f"contiguous_{contiguous}"
        # off: the profile's `auto`; on: asked for
        extra = {"deepspeed": {"zero_stage": 2, "contiguous_gradients": True}} if contiguous else {}
        _, *runs[contiguous] = _two_zero2_ranks(tiny_run_inputs, run_dir, **extra)
        config = json.loads((run_dir / "zero2.json").read_text(encoding="utf-8"))
        assert config["zero_optimization"]["contiguous_gradients"] is contiguous
    _assert_trained_alike(tiny_run_inputs, runs[False], runs[True])


@pytest.mark.slow
def test_zero2_with_the_foreach_grad_norm_trains_the_same(tiny_run_inputs, tmp_path):
    """The gpu profile's `deepspeed.foreach_grad_norm` replaces ZeRO-2's gradient norm (which clips the
    gradients and is logged as grad_norm) with multi-tensor kernels. Two ZeRO-2 ranks on CPU, three steps,
    with it off and on: the same logged losses and gradient norms (a rank's own partition alone, without the
    all_reduce, gives a norm 19% smaller and clips otherwise) and the same trained weights. Both take the
    norm in float64: a float32 sum came to 3.5e-5 off on the 142k-element embedding partition here."""
    installed = "ZeRO gradient norm: multi-tensor kernels (deepspeed.foreach_grad_norm)"
    runs = {}
    for foreach in (False, True):
        run_dir = tmp_path / f"foreach_{foreach}"
        # on: the profile's default; off: asked for
        extra = {} if foreach else {"deepspeed": {"zero_stage": 2, "foreach_grad_norm": False}}
        proc, *runs[foreach] = _two_zero2_ranks(tiny_run_inputs, run_dir, **extra)
        spec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        assert spec["config"]["deepspeed"]["foreach_grad_norm"] is foreach
        # both ranks took the multi-tensor norm, or neither did
        assert proc.stderr.count(installed) == (2 if foreach else 0)
    _assert_trained_alike(tiny_run_inputs, runs[True], runs[False])
