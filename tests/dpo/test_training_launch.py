"""One function builds the launch command of every mode; CPU fallbacks and hardware errors."""

from __future__ import annotations

import pytest

from edu_bias_pipeline.dpo.config import TrainingConfig, TrainingConfigError
from edu_bias_pipeline.dpo.hardware import Hardware
from edu_bias_pipeline.dpo.launch import ENTRY_MODULE, plan_launch

GPU2 = Hardware(cuda_available=True, cuda_device_count=2, bf16_supported=True)
CPU = Hardware()


def plan(hw=GPU2, environ=None, wandb_api_key=None, **cfg):
    return plan_launch(
        TrainingConfig(**cfg),
        "run.json",
        hw,
        environ=environ or {},
        deepspeed_config_path="ds.json",
        wandb_api_key=wandb_api_key,
        python="py",
    )


def test_single_is_plain_python():
    p = plan(mode="single")
    assert p.argv == ["py", "-m", ENTRY_MODULE, "run.json"]
    assert p.num_processes == 1 and p.precision == "bf16" and not p.use_cpu


@pytest.mark.parametrize("mode", ["single", "accelerate"])
def test_one_process_on_a_multi_gpu_host_is_pinned_to_one_gpu(mode):
    p = plan(mode=mode)
    assert p.num_processes == 1 and p.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert any("2 GPUs visible to one training process" in w for w in p.warnings)
    # the user's own selection is respected: the first of the GPUs they named
    assert plan(mode=mode, environ={"CUDA_VISIBLE_DEVICES": "2,3"}).env["CUDA_VISIBLE_DEVICES"] == "2"
    one = Hardware(cuda_available=True, cuda_device_count=1, bf16_supported=True)
    assert "CUDA_VISIBLE_DEVICES" not in plan(hw=one, mode=mode).env
    assert "CUDA_VISIBLE_DEVICES" not in plan(mode="accelerate", launch={"num_processes": 2}).env


def test_accelerate_on_two_gpus():
    p = plan(mode="accelerate", launch={"num_processes": 2})
    assert p.argv[:3] == ["py", "-m", "accelerate.commands.launch"]
    joined = " ".join(p.argv)
    assert "--num_processes 2" in joined and "--multi_gpu" in joined and "--mixed_precision bf16" in joined
    assert p.argv[-3:] == ["-m", ENTRY_MODULE, "run.json"]
    assert "--use_deepspeed" not in p.argv


def test_deepspeed_through_accelerate_and_generated_config():
    p = plan(
        mode="deepspeed", launch={"num_processes": 2}, deepspeed={"zero_stage": 3, "offload_optimizer": True}
    )
    joined = " ".join(p.argv)
    assert "--use_deepspeed --deepspeed_config_file ds.json" in joined and "--num_processes 2" in joined
    ds = p.deepspeed_config
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "optimizer" not in ds  # the Trainer's AdamW: no fused-Adam JIT build
    assert ds["bf16"]["enabled"] == "auto" and ds["train_micro_batch_size_per_gpu"] == "auto"
    assert p.precision == "bf16"


def test_zero2_reduces_gradients_in_large_overlapped_buckets():
    ds = plan(mode="deepspeed", launch={"num_processes": 2}).deepspeed_config["zero_optimization"]
    # not the Trainer's hidden_size² "auto": ~600 separate reductions a step on a 0.5B model
    assert ds["reduce_bucket_size"] == ds["allgather_bucket_size"] == 500_000_000
    assert ds["overlap_comm"] is True
    z3 = plan(mode="deepspeed", launch={"num_processes": 2}, deepspeed={"zero_stage": 3})
    assert z3.deepspeed_config["zero_optimization"]["reduce_bucket_size"] == "auto"
    assert "allgather_bucket_size" not in z3.deepspeed_config["zero_optimization"]
    own = plan(
        mode="deepspeed",
        launch={"num_processes": 2},
        deepspeed={"overlap_comm": False, "reduce_bucket_size": "auto"},
    ).deepspeed_config["zero_optimization"]
    assert own["overlap_comm"] is False and own["reduce_bucket_size"] == "auto"
    assert "allgather_bucket_size" not in own


def test_unbuffered_gradients_with_zero2_offload_are_reported_as_ignored():
    ignored = "contiguous_gradients: false has no effect"
    asked = {"contiguous_gradients": False, "offload_optimizer": True}
    p = plan(mode="deepspeed", launch={"num_processes": 2}, deepspeed=asked)
    assert any(ignored in w for w in p.warnings)
    for fine in ({"contiguous_gradients": False}, {**asked, "zero_stage": 3}):
        p = plan(mode="deepspeed", launch={"num_processes": 2}, deepspeed=fine)
        assert not any(ignored in w for w in p.warnings)


def test_deepspeed_launcher_multi_node_with_hostfile():
    p = plan(
        mode="deepspeed",
        deepspeed={"launcher": "deepspeed"},
        launch={"num_processes": 2, "num_machines": 2, "hostfile": "hosts", "main_process_ip": "10.0.0.1"},
    )
    assert p.argv[:3] == ["py", "-m", "deepspeed.launcher.runner"]
    joined = " ".join(p.argv)
    assert "--hostfile hosts --num_nodes 2" in joined and "--master_addr 10.0.0.1" in joined
    assert p.argv[-3:] == ["--module", ENTRY_MODULE, "run.json"]


def test_accelerate_multi_machine():
    p = plan(
        mode="accelerate",
        launch={
            "num_processes": 2,
            "num_machines": 2,
            "machine_rank": 1,
            "main_process_ip": "10.0.0.1",
            "main_process_port": 1234,
        },
    )
    joined = " ".join(p.argv)
    assert "--num_machines 2" in joined and "--machine_rank 1" in joined
    assert "--main_process_ip 10.0.0.1" in joined and "--main_process_port 1234" in joined


@pytest.mark.parametrize("mode", ["accelerate", "deepspeed"])
def test_no_cuda_falls_back_to_one_cpu_process(mode):
    p = plan(hw=CPU, mode=mode, launch={"num_processes": 4}, precision="bf16")
    assert p.use_cpu and p.num_processes == 1 and p.precision == "fp32"
    assert "--num_processes 1" in " ".join(p.argv)
    assert any("falling back to a single CPU process" in w for w in p.warnings)
    assert any("fp32 on CPU" in w for w in p.warnings)
    assert p.env["CUDA_VISIBLE_DEVICES"] == ""
    if mode == "deepspeed":
        assert "--use_deepspeed" in p.argv and "--cpu" not in p.argv and p.env["DS_ACCELERATOR"] == "cpu"
    else:
        assert "--cpu" in p.argv


def test_hardware_errors():
    with pytest.raises(TrainingConfigError, match="QLoRA .* needs a CUDA GPU"):
        plan(hw=CPU, lora={"qlora": True})
    with pytest.raises(TrainingConfigError, match="num_processes=4 but this machine has only 2"):
        plan(mode="accelerate", launch={"num_processes": 4})


def test_wandb_key_goes_to_the_child_env_only():
    defaulted = {"WANDB_MODE": "offline", "EDU_BIAS_OFFLINE_DEFAULTED": "HF_HUB_OFFLINE,WANDB_MODE"}
    p = plan(report_to="wandb", environ=defaulted, wandb_api_key="secret-key")
    assert p.env["WANDB_API_KEY"] == "secret-key" and p.env["WANDB_MODE"] == "online"
    assert not any("secret-key" in a for a in p.argv)
    # an offline mode the user exported stays, key or not
    chosen = plan(report_to="wandb", environ={"WANDB_MODE": "offline"}, wandb_api_key="secret-key")
    assert chosen.env["WANDB_MODE"] == "offline" and chosen.env["WANDB_API_KEY"] == "secret-key"
    offline = plan(report_to="wandb", environ={})
    assert offline.env["WANDB_MODE"] == "offline" and "WANDB_API_KEY" not in offline.env
    tb = plan(report_to="tensorboard", output_dir="out")
    assert tb.env["TENSORBOARD_LOGGING_DIR"] == "out/tensorboard"
