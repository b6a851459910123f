"""The command that starts `edu_bias_pipeline.dpo.entry`: plain python, `accelerate launch` or DeepSpeed.

Kedro cannot itself run under a distributed launcher, so the training node starts the entry module as a
subprocess. `plan_launch` is the one function that turns a validated `TrainingConfig` and the detected
hardware into that command (argv + environment); the three modes differ only in the launcher prefix.

Without CUDA, `accelerate` and `deepspeed` fall back to a single CPU process (DeepSpeed still initialises
its ZeRO engine on the CPU accelerator), with a warning, as the old scripts did. QLoRA without CUDA is an
error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edu_bias_pipeline.dpo import checkpoint_trust
from edu_bias_pipeline.dpo.config import TrainingConfig, TrainingConfigError
from edu_bias_pipeline.dpo.hardware import (
    Hardware,
    hardware_for,
    resolve_precision,
    uses_deepspeed_launcher,
    validate_against_hardware,
)
from edu_bias_pipeline.offline import OFFLINE_DEFAULTS, is_default

logger = logging.getLogger(__name__)

ENTRY_MODULE = "edu_bias_pipeline.dpo.entry"


@dataclass
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    mode: str  # the requested mode
    num_processes: int  # total processes launched (accelerate counts all machines)
    use_cpu: bool
    precision: str  # bf16 | fp16 | fp32
    deepspeed_config: dict[str, Any] | None = None
    deepspeed_config_file: str | None = None  # what launcher and Trainer read: config_file or generated
    warnings: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        where = "CPU" if self.use_cpu else "GPU"
        return f"{self.mode} ({self.num_processes} process(es), {where}, {self.precision})"


# DeepSpeed's own default. The Trainer's "auto" is hidden_size², sized for ZeRO-3 prefetching: under ZeRO-2 it
# splits a 0.5B model's gradients into ~600 separately launched reductions per step.
ZERO2_BUCKET_ELEMENTS = 500_000_000


def deepspeed_config(config: TrainingConfig, precision: str) -> dict[str, Any]:
    """A DeepSpeed config for the HF Trainer: "auto" values are filled from the training arguments.

    No `optimizer` block: the Trainer's AdamW is used, so DeepSpeed need not JIT-compile fused Adam
    (which also makes the CPU fallback work).
    """
    ds = config.deepspeed
    bucket = ds.reduce_bucket_size
    if bucket is None:
        bucket = ZERO2_BUCKET_ELEMENTS if ds.zero_stage == 2 else "auto"
    contiguous = ds.contiguous_gradients
    if contiguous == "auto":  # off only where measured: ZeRO-2 without offload
        contiguous = ds.zero_stage == 3 or ds.offload_optimizer
    zero: dict[str, Any] = {
        "stage": ds.zero_stage,
        "overlap_comm": ds.overlap_comm,
        "contiguous_gradients": contiguous,
        "reduce_bucket_size": bucket,
    }
    if ds.zero_stage == 2 and isinstance(bucket, int):
        zero["allgather_bucket_size"] = bucket
    if ds.zero_stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                # The final model is saved as ordinary safetensors, gathered from the shards.
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if ds.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    out: dict[str, Any] = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        # "auto": filled from the training arguments (bf16/fp16), so the launcher and Trainer never disagree
        "bf16": {"enabled": "auto", "check_grad_overflow": ds.check_grad_overflow},
        "fp16": {"enabled": "auto"},
        "zero_optimization": zero,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer:
        # Keep the Trainer's torch AdamW even with offload (no DeepSpeedCPUAdam build needed).
        out["zero_force_ds_cpu_optimizer"] = False
    return out


def child_environment(
    config: TrainingConfig,
    environ: Mapping[str, str],
    *,
    use_cpu: bool,
    is_deepspeed: bool,
    wandb_api_key: str | None = None,
) -> dict[str, str]:
    """Environment of the launched process: the caller's, offline defaults, and tracking settings."""
    env = dict(environ)
    for key, value in OFFLINE_DEFAULTS.items():
        env.setdefault(key, value)
    env["PYTHONUNBUFFERED"] = "1"
    out = Path(config.output_dir)
    if config.report_to == "wandb":
        env.setdefault("WANDB_PROJECT", config.wandb_project)
        env.setdefault("WANDB_DIR", str(out))
        if wandb_api_key:
            env["WANDB_API_KEY"] = wandb_api_key
            if env.get("WANDB_MODE") == "offline" and is_default("WANDB_MODE", environ):
                # offline was only the no-key default, not the user's choice: a key from credentials wins
                env["WANDB_MODE"] = "online"
        elif not env.get("WANDB_API_KEY"):
            env["WANDB_MODE"] = "offline"
    if config.report_to == "tensorboard":
        env.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tensorboard"))
    if use_cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
        if is_deepspeed:
            env["DS_ACCELERATOR"] = "cpu"
    return env


def plan_launch(
    config: TrainingConfig,
    config_path: str | Path,
    hw: Hardware,
    *,
    environ: Mapping[str, str] | None = None,
    deepspeed_config_path: str | Path | None = None,
    wandb_api_key: str | None = None,
    python: str = sys.executable,
) -> LaunchPlan:
    """The argv + env that run `entry.py` with `config_path` in the configured mode."""
    warnings = validate_against_hardware(config, hw)
    precision, notes = resolve_precision(config, hw)
    warnings += notes
    mode = config.mode
    launch = config.launch
    use_cpu = not hw.cuda_available
    distributed = mode in ("accelerate", "deepspeed")
    is_deepspeed = mode == "deepspeed"
    machines = launch.num_machines if distributed else 1
    if not distributed:
        nproc = 1
    elif use_cpu:  # one CPU process per machine: several on one machine would only share its cores
        nproc = machines
    else:
        nproc = launch.num_processes
    ds_conf = deepspeed_config(config, precision) if is_deepspeed else None
    if is_deepspeed and deepspeed_config_path is None:
        raise ValueError("deepspeed mode needs deepspeed_config_path")
    ds_file = str(config.deepspeed.config_file or deepspeed_config_path) if is_deepspeed else None

    entry = [ENTRY_MODULE, str(config_path)]
    if not distributed:
        argv = [python, "-m", *entry]
    elif uses_deepspeed_launcher(config, hw):
        argv = [
            python,
            "-m",
            "deepspeed.launcher.runner",
            "--no_local_rank",
            "--master_port",
            str(launch.main_process_port),
        ]
        if launch.hostfile:
            argv += ["--hostfile", launch.hostfile, "--num_nodes", str(machines)]
            if launch.no_ssh and machines > 1:
                # DeepSpeed's own per-node mode: the runner turns the hostfile into the same
                # `deepspeed.launcher.launch --world_info=… --node_rank=…` line pdsh would run on this machine
                argv += ["--no_ssh", "--node_rank", str(launch.machine_rank)]
        else:
            argv += ["--num_gpus", str(nproc)]
        if launch.main_process_ip:
            argv += ["--master_addr", launch.main_process_ip]
        argv += [*launch.extra_args, "--module", *entry]
    else:
        argv = [
            python,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(nproc),
            "--num_machines",
            str(machines),
            "--main_process_port",
            str(launch.main_process_port),
            "--dynamo_backend",
            "no",
        ]
        if machines > 1:
            argv += ["--machine_rank", str(launch.machine_rank)]
            if launch.main_process_ip:
                argv += ["--main_process_ip", launch.main_process_ip]
        if is_deepspeed:  # accelerate refuses --cpu with --use_deepspeed; the env hides CUDA
            argv += ["--use_deepspeed", "--deepspeed_config_file", ds_file]
            if machines > 1 and launch.no_ssh:
                # torchrun on every machine, as in accelerate mode, instead of pdsh from rank 0
                argv += ["--deepspeed_multinode_launcher", "standard"]
            elif launch.hostfile and not (use_cpu and machines == 1):
                argv += ["--deepspeed_hostfile", launch.hostfile]
        else:
            if use_cpu and machines == 1:
                argv += ["--cpu"]
            argv += ["--mixed_precision", {"bf16": "bf16", "fp16": "fp16"}.get(precision, "no")]
            if nproc > 1 or machines > 1:
                # Across machines also on CPU: `--cpu` would start every machine's process without a rank
                # (accelerate leaves multi-CPU ranks to mpirun), so each would train a model of its own.
                # torchrun gives them ranks; the launched process picks gloo since the env hides CUDA.
                argv += ["--multi_gpu"]
        argv += [*launch.extra_args, "-m", *entry]

    env = child_environment(
        config,
        environ if environ is not None else {},
        use_cpu=use_cpu,
        is_deepspeed=is_deepspeed,
        wandb_api_key=wandb_api_key,
    )
    if not use_cpu and nproc == 1 and launch.num_machines == 1 and hw.cuda_device_count > 1:
        # One process that sees several GPUs gets nn.DataParallel from the Trainer, which TRL refuses
        # (seen on a 2-GPU H100 host): run on the first visible GPU and say so.
        visible = [d.strip() for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        first = visible[0] if visible else "0"
        env["CUDA_VISIBLE_DEVICES"] = first
        warnings.append(
            f"{hw.cuda_device_count} GPUs visible to one training process: using GPU {first} only "
            f"(CUDA_VISIBLE_DEVICES={first}); set mode accelerate or deepspeed with launch.num_processes "
            f"{hw.cuda_device_count} to use them all"
        )
    return LaunchPlan(
        argv=argv,
        env=env,
        mode=mode,
        num_processes=nproc,
        use_cpu=use_cpu,
        precision=precision,
        deepspeed_config=ds_conf,
        deepspeed_config_file=ds_file,
        warnings=warnings,
    )


# ------------------------------------------------------------------------------- one machine of many


def node_plan(
    spec: Mapping[str, Any],
    spec_path: str | Path,
    machine_rank: int,
    hw: Hardware | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> LaunchPlan:
    """The launch line of machine `machine_rank` for the run spec the training node wrote (`.run/run.json`).

    The node on machine 0 launches `plan_launch` of the same config; the other machines run this, which
    differs from it only in the machine rank, so every machine starts the launcher the same way. `hw` is this
    machine's hardware (detected when not given); `training.device` applies to it as on machine 0.
    """
    config = TrainingConfig.model_validate(spec["config"])
    launch = config.launch.model_copy(update={"machine_rank": machine_rank})
    config = config.model_copy(update={"launch": launch})
    hw = hardware_for(config, hw)
    validate_against_hardware(config, hw)
    return plan_launch(
        config,
        spec_path,
        hw,
        environ=environ,
        deepspeed_config_path=spec["runtime"].get("deepspeed_config"),
        python=python,
    )


def read_run_spec(path: Path, wait_s: float) -> dict[str, Any]:
    """The run spec at `path`, waiting up to `wait_s` seconds for the node on machine 0 to write it."""
    import json
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(spec, dict) and "config" in spec and "runtime" in spec:
                return spec
            problem = "it is not a run spec (no config/runtime)"
        except FileNotFoundError:
            problem = "it does not exist"
        except ValueError:  # being written
            problem = "it is not complete JSON"
        if time.monotonic() >= deadline:
            raise TrainingConfigError(
                f"{path}: {problem} after {wait_s:.0f} s. Machine 0 writes it when its "
                "`kedro run --pipelines training` reaches the training node; start that first, or wait "
                "longer (--wait)."
            )
        time.sleep(1.0)


def _parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m edu_bias_pipeline.dpo.launch",
        description="Start (or print) the training launcher of one machine of a multi-node run, from the run "
        "spec the training node wrote on machine 0 (shared filesystem).",
    )
    parser.add_argument("run_spec", type=Path, help="the run's .run/run.json (under training.output_dir)")
    parser.add_argument("--machine-rank", type=int, required=True, help="this machine's rank (1 .. N-1)")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the run spec to appear")
    parser.add_argument("--print", action="store_true", help="print the launch line instead of running it")
    return parser


def main(argv: list[str] | None = None) -> int:
    import os
    import shlex

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = read_run_spec(args.run_spec, args.wait)
        resume_from = spec["runtime"].get("resume_from")
        if resume_from:
            # Machine 0's node checked it before writing the spec; this machine loads it too, so it checks
            # the files it is about to unpickle itself.
            checkpoint_trust.verify(Path(resume_from))
        plan = node_plan(spec, args.run_spec, args.machine_rank, environ=os.environ)
    except (TrainingConfigError, checkpoint_trust.UntrustedCheckpointError) as exc:
        logger.error("%s", exc)
        return 2
    if args.print:
        sys.stdout.write(shlex.join(plan.argv) + "\n")
        return 0
    for note in plan.warnings:
        logger.warning("training: %s", note)
    logger.info(
        "training: launching %s on machine %d: %s", plan.description, args.machine_rank, shlex.join(plan.argv)
    )
    # exec: the batch system's signals reach the launcher itself, and its exit code is this command's
    os.execvpe(plan.argv[0], plan.argv, plan.env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
