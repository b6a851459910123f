"""What this machine can train on, and the settings it cannot honour: checked before anything is launched.

`hardware_for` applies `training.device`; `resolve_precision` and `validate_against_hardware` turn the
detected hardware and a validated `TrainingConfig` into the precision and the refusals or fallback warnings
that `launch.plan_launch` (and the node, before it writes anything) acts on.
"""

from __future__ import annotations

from dataclasses import dataclass

from edu_bias_pipeline.dpo.config import TrainingConfig, TrainingConfigError


@dataclass(frozen=True)
class Hardware:
    cuda_available: bool = False
    cuda_device_count: int = 0
    bf16_supported: bool = False


def detect_hardware() -> Hardware:
    import torch

    if not torch.cuda.is_available():
        return Hardware()
    return Hardware(True, torch.cuda.device_count(), bool(torch.cuda.is_bf16_supported()))


def hardware_for(config: TrainingConfig, detected: Hardware | None = None) -> Hardware:
    """The hardware training may use on this machine: `training.device: cpu` hides the GPUs, `cuda` insists
    on one. `detected` is this machine's hardware (detected here when not given)."""
    if config.device == "cpu":
        return Hardware()
    hw = detect_hardware() if detected is None else detected
    if config.device == "cuda" and not hw.cuda_available:
        import torch

        why = (
            f"this torch ({torch.__version__}) is a CPU-only build"
            if torch.version.cuda is None
            else "torch sees no GPU (check CUDA_VISIBLE_DEVICES and the driver)"
        )
        raise TrainingConfigError(
            f"training.device is 'cuda' but no CUDA device is available: {why}. Set training.device: auto "
            "(or cpu) to train on the CPU, e.g. --params training.device=auto."
        )
    return hw


def gpu_settings(config: TrainingConfig) -> list[str]:
    """The settings on that only a GPU uses (conf/gpu turns them on): on CPU they say the run meant a GPU."""
    names = ("probe_batch_size", "sdpa_backends", "liger_kernels")
    return [name for name in names if getattr(config, name)]


def resolve_precision(config: TrainingConfig, hw: Hardware) -> tuple[str, list[str]]:
    notes: list[str] = []
    if not hw.cuda_available:
        if config.precision in ("bf16", "fp16"):
            notes.append(
                f"precision {config.precision} requested but no CUDA device: training in fp32 on CPU"
            )
        elif gpu_only := gpu_settings(config):
            notes.append(
                f"GPU settings ({', '.join(gpu_only)}) without a CUDA device: training in fp32 on CPU "
                "(no bf16)"
            )
        return "fp32", notes
    if config.precision == "auto":
        return ("bf16" if hw.bf16_supported else "fp32"), notes
    if config.precision == "bf16" and not hw.bf16_supported:
        raise TrainingConfigError("training.precision: bf16 requested but this GPU does not support bf16")
    return config.precision, notes


def validate_against_hardware(config: TrainingConfig, hw: Hardware) -> list[str]:
    """Hardware-dependent configuration errors (raised) and fallbacks (returned as warnings)."""
    notes: list[str] = []
    if config.lora.qlora:
        if not hw.cuda_available:
            raise TrainingConfigError(
                "training.lora.qlora: QLoRA (4-bit bitsandbytes) needs a CUDA GPU, and none is available. "
                "Use lora.enabled without qlora on CPU, or run on a GPU machine."
            )
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise TrainingConfigError(
                "training.lora.qlora needs the bitsandbytes package: pip install 'edu_bias_pipeline[qlora]'"
            )
    if config.mode == "single" and config.launch.num_processes > 1:
        notes.append("mode 'single' runs one process: launch.num_processes is ignored")
    if config.mode in ("accelerate", "deepspeed"):
        notes += _validate_machines(config, hw)
        if not hw.cuda_available and config.launch.num_machines == 1:
            notes.append(
                f"mode '{config.mode}' asked for, but no CUDA device is available: falling back to a single "
                "CPU process"
                + (" (DeepSpeed ZeRO on the CPU accelerator)" if config.mode == "deepspeed" else "")
            )
        elif (
            hw.cuda_available
            and config.launch.num_machines == 1
            and config.launch.num_processes > hw.cuda_device_count
        ):
            raise TrainingConfigError(
                f"training.launch.num_processes={config.launch.num_processes} but this machine has only "
                f"{hw.cuda_device_count} CUDA device(s)"
            )
    ds = config.deepspeed
    if (
        config.mode == "deepspeed"
        and ds.zero_stage == 2
        and ds.offload_optimizer
        and ds.contiguous_gradients is False
    ):
        notes.append(
            "deepspeed.contiguous_gradients: false has no effect under ZeRO-2 with offload_optimizer: "
            "DeepSpeed keeps the contiguous gradient buffer"
        )
    if config.lora.qlora and config.mode == "deepspeed" and config.deepspeed.zero_stage == 3:
        notes.append(
            "QLoRA under ZeRO-3 needs bnb_4bit_quant_storage support; ZeRO-2 is the tested combination"
        )
    return notes


def uses_deepspeed_launcher(config: TrainingConfig, hw: Hardware) -> bool:
    """`deepspeed` launcher: on a GPU machine or across machines; one CPU machine goes through accelerate."""
    return (
        config.mode == "deepspeed"
        and config.deepspeed.launcher == "deepspeed"
        and (hw.cuda_available or config.launch.num_machines > 1)
    )


def _validate_machines(config: TrainingConfig, hw: Hardware) -> list[str]:
    """Multi-node settings that cannot rendezvous are refused before anything starts."""
    launch = config.launch
    if launch.num_machines == 1:
        return []
    where = "training.launch"
    if launch.machine_rank >= launch.num_machines:
        raise TrainingConfigError(
            f"{where}.machine_rank={launch.machine_rank} but num_machines={launch.num_machines}: machine "
            f"ranks run from 0 to {launch.num_machines - 1}"
        )
    deepspeed_launcher = uses_deepspeed_launcher(config, hw)
    if deepspeed_launcher and not launch.hostfile:
        raise TrainingConfigError(
            f"{where}.hostfile: the deepspeed launcher needs a hostfile (`host slots=N` lines) for "
            f"num_machines={launch.num_machines}"
        )
    if not deepspeed_launcher and not launch.main_process_ip:
        raise TrainingConfigError(
            f"{where}.main_process_ip: num_machines={launch.num_machines} needs the address of the machine "
            "of rank 0, which every machine connects to"
        )
    if config.mode == "deepspeed" and not deepspeed_launcher and not launch.no_ssh and not launch.hostfile:
        raise TrainingConfigError(
            f"{where}: multi-node DeepSpeed through accelerate reaches the other machines over pdsh/ssh and "
            "needs launch.hostfile; or set launch.no_ssh: true and start every machine's own launcher"
        )
    if not hw.cuda_available:
        notes = [
            f"no CUDA device: one CPU process per machine ({launch.num_machines} machines, gloo)"
            + (" with DeepSpeed ZeRO on the CPU accelerator" if config.mode == "deepspeed" else "")
        ]
        if launch.num_processes != launch.num_machines:
            notes.append(f"launch.num_processes={launch.num_processes} is ignored on CPU")
        return notes
    if launch.num_processes % launch.num_machines:
        raise TrainingConfigError(
            f"{where}.num_processes={launch.num_processes} is not a multiple of num_machines="
            f"{launch.num_machines}: every machine runs the same number of processes"
        )
    return []
