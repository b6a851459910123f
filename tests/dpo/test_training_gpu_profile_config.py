"""The `gpu` training profile (conf/gpu/): its settings, the untouched profiles, its CPU fallback."""

from __future__ import annotations

import pytest
from conftest import training_parameters
from test_training_environments import OPTIMIZED

from edu_bias_pipeline.dpo.config import TrainingConfigError, resolve_training_config
from edu_bias_pipeline.dpo.hardware import Hardware, resolve_precision
from edu_bias_pipeline.dpo.launch import plan_launch


def env_config(env: str | None, **params):
    """The config of `kedro run --env env --params training.<params>` (no env: conf/base alone)."""
    return resolve_training_config(training_parameters(env, {"training": params}), {})


def test_gpu_profile_picks_the_throughput_settings():
    cfg = env_config("gpu")
    assert cfg.precompute_ref_log_probs is True
    assert cfg.train_sampling_strategy == "group_by_length"
    assert cfg.probe_batch_size is True
    assert cfg.per_device_train_batch_size >= 32 and cfg.gradient_accumulation_steps == 1
    assert cfg.attn_implementation == "sdpa"
    assert cfg.liger_kernels == "auto" and cfg.torch_compile is False
    assert cfg.dataloader_num_workers > 0 and cfg.precision == "auto"
    assert cfg.sdpa_backends is not None and "cudnn" not in cfg.sdpa_backends and "math" in cfg.sdpa_backends
    # --params still win over the environment
    cfg = env_config("gpu", precompute_ref_log_probs=False, torch_compile=True)
    assert cfg.precompute_ref_log_probs is False and cfg.torch_compile is True


def test_base_and_optimized_profiles_are_unchanged():
    assert training_parameters("optimized") == OPTIMIZED
    for name in (None, "optimized"):
        cfg = env_config(name)
        assert not cfg.precompute_ref_log_probs and cfg.train_sampling_strategy == "random"
        assert cfg.liger_kernels is False and cfg.attn_implementation is None and not cfg.probe_batch_size


def test_gpu_profile_falls_back_to_fp32_without_cuda_and_says_so(tmp_path):
    cfg = env_config("gpu")
    precision, notes = resolve_precision(cfg, Hardware())
    assert precision == "fp32" and any("GPU settings" in n and "fp32" in n for n in notes)
    assert resolve_precision(cfg, Hardware(True, 1, True))[0] == "bf16"
    plan = plan_launch(cfg, tmp_path / "run.json", Hardware(), environ={})
    assert plan.precision == "fp32" and plan.use_cpu and any("GPU settings" in w for w in plan.warnings)
    assert not any("GPU settings" in n for n in resolve_precision(env_config(None), Hardware())[1])


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"train_sampling_strategy": "shortest_first"}, r"training\.train_sampling_strategy"),
        ({"liger_kernels": "maybe"}, r"training\.liger_kernels"),
        ({"precompute_ref_batch_size": 0}, r"training\.precompute_ref_batch_size"),
    ],
)
def test_bad_throughput_settings_are_named(params, match):
    with pytest.raises(TrainingConfigError, match=match):
        env_config("gpu", **params)


def test_sdpa_backends_are_validated_and_applied_as_torch_switches():
    import torch

    from edu_bias_pipeline.dpo.model import SDPA_TOGGLES, select_sdpa_backends

    with pytest.raises(TrainingConfigError, match="sdpa_backends"):
        resolve_training_config({"sdpa_backends": ["cudnn", "fast"]}, {})
    assert resolve_training_config({}, {}).sdpa_backends is None  # torch's own choice unless asked
    readers = {
        "flash": torch.backends.cuda.flash_sdp_enabled,
        "efficient": torch.backends.cuda.mem_efficient_sdp_enabled,
        "cudnn": torch.backends.cuda.cudnn_sdp_enabled,
        "math": torch.backends.cuda.math_sdp_enabled,
    }
    assert set(readers) == set(SDPA_TOGGLES)
    saved = {name: read() for name, read in readers.items()}
    try:
        select_sdpa_backends(["efficient", "math"])
        assert {name: read() for name, read in readers.items()} == {
            "flash": False,
            "efficient": True,
            "cudnn": False,
            "math": True,
        }
        select_sdpa_backends(None)  # leaves the switches as they are
        assert readers["efficient"]() and not readers["flash"]()
    finally:
        for name, value in saved.items():
            getattr(torch.backends.cuda, SDPA_TOGGLES[name])(value)


def test_gpu_profile_drops_deepspeeds_bf16_overflow_check_and_keeps_it_under_other_settings():
    """--params merge key by key into the environment's `deepspeed` group (Kedro's merge): asking for ZeRO-3
    under conf/gpu keeps its overflow setting, and --params can still turn the check back on."""
    from edu_bias_pipeline.dpo.launch import deepspeed_config

    gpu = env_config("gpu", deepspeed={"zero_stage": 3})
    assert gpu.deepspeed.zero_stage == 3 and gpu.deepspeed.check_grad_overflow is False
    assert deepspeed_config(gpu, "bf16")["bf16"] == {"enabled": "auto", "check_grad_overflow": False}
    back_on = env_config("gpu", deepspeed={"check_grad_overflow": True})
    assert back_on.deepspeed.check_grad_overflow is True
    # a null means unset: the field's default, inside the group as at the top level
    for unset in ({"deepspeed": {"check_grad_overflow": None}}, {"deepspeed": None}):
        assert env_config("gpu", **unset).deepspeed.check_grad_overflow is True
    for profile in (None, "optimized"):  # DeepSpeed's own default elsewhere
        assert env_config(profile).deepspeed.check_grad_overflow is True


def test_gpu_profile_stages_zero2_gradients_without_the_contiguous_buffer():
    """`auto`, conf/gpu's value: off only where it was measured (ZeRO-2 without optimizer offload)."""
    from edu_bias_pipeline.dpo.launch import deepspeed_config

    def zero(**deepspeed):
        cfg = env_config("gpu", mode="deepspeed", deepspeed=deepspeed)
        return deepspeed_config(cfg, "bf16")["zero_optimization"]

    assert zero()["contiguous_gradients"] is False
    # overlap_comm stays on: it is what a model of more than one bucket needs
    assert zero()["overlap_comm"] is True
    assert zero(zero_stage=3)["contiguous_gradients"] is True  # large models need it against fragmentation
    assert zero(offload_optimizer=True)["contiguous_gradients"] is True  # DeepSpeed would force it anyway
    assert zero(contiguous_gradients=True)["contiguous_gradients"] is True
    assert zero(zero_stage=3, contiguous_gradients=False)["contiguous_gradients"] is False  # asked for
    for profile in (None, "optimized"):  # DeepSpeed's own default elsewhere
        cfg = env_config(profile)
        assert deepspeed_config(cfg, "fp32")["zero_optimization"]["contiguous_gradients"] is True
