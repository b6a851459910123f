"""The launched training process: `python -m edu_bias_pipeline.dpo.entry RUN.json`.

Runs the same under plain python, `accelerate launch` and DeepSpeed. `RUN.json` is the `contract.RunSpec`
the Kedro node wrote; nothing here reads configuration from env vars (the launchers' own RANK/WORLD_SIZE
plumbing aside, which accelerate handles). The exit code and `.run/error.json` tell the node how it ended.

TRL's `DPOTrainer` does the training maths; `main` reads like TRL's `scripts/dpo.py`: the spec, the
tokenizer and the datasets, `DPOConfig`, the model, the trainer, train, save. Around it: the prompt contract
(`data`), LoRA/QLoRA and kernels (`model`), per-bias_type evaluation and the old metric names (`trainer`),
health and throughput (`callbacks`), resume, an OOM hint, and an atomic `final/` directory (`final`).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from edu_bias_pipeline import patches
from edu_bias_pipeline.dpo import checkpoint_trust, health, zero_grad_norm
from edu_bias_pipeline.dpo.arguments import dpo_config_kwargs
from edu_bias_pipeline.dpo.batch_size import HEADROOM, fit_batch_size
from edu_bias_pipeline.dpo.config import TrainingConfig
from edu_bias_pipeline.dpo.contract import (
    ERROR_FILE,
    EXIT_FAILED,
    EXIT_OOM,
    METRICS_FILE,
    RunSpec,
    RuntimeSpec,
)
from edu_bias_pipeline.dpo.data import ALL_VAL, PreferenceData, completion_lengths, load_preference_data
from edu_bias_pipeline.files import write_json_atomic

logger = logging.getLogger("edu_bias_pipeline.dpo")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m edu_bias_pipeline.dpo.entry RUN.json\n")
        return EXIT_FAILED
    spec = RunSpec.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    config, runtime = spec.config, spec.runtime
    try:
        patches.require("dpo_trainer")  # each machine checks its own libraries
        run(config, runtime)
    except Exception as exc:  # noqa: BLE001 - reported to the node through error.json and the exit code
        oom = _is_oom(exc)
        message = _oom_message(config) if oom else f"{type(exc).__name__}: {exc}"
        logger.exception("training failed: %s", message)
        try:
            write_json_atomic(
                Path(runtime.run_dir) / ERROR_FILE, {"kind": "oom" if oom else "error", "message": message}
            )
        except OSError:
            pass
        return EXIT_OOM if oom else EXIT_FAILED
    return 0


def run(config: TrainingConfig, runtime: RuntimeSpec, extra_callbacks: tuple = ()) -> dict[str, Any]:
    """Train, evaluate and save; `extra_callbacks` lets benchmarks/train_throughput.py time this very path."""
    from accelerate import PartialState
    from transformers import AutoTokenizer
    from trl import DPOConfig

    from edu_bias_pipeline.dpo.final import evaluate_final, save_final
    from edu_bias_pipeline.dpo.model import load_model

    state = PartialState(cpu=runtime.use_cpu) if runtime.use_cpu else PartialState()
    output_dir = Path(config.output_dir)
    _setup_logging(output_dir, state.is_main_process)
    logger.info("training process %d/%d on %s", state.process_index, state.num_processes, state.device)

    tokenizer = AutoTokenizer.from_pretrained(runtime.model_path, trust_remote_code=config.trust_remote_code)
    data = load_preference_data(config, runtime, tokenizer, state)
    # before the model loads: a ZeRO-3 DeepSpeed config in DPOConfig makes from_pretrained partition it
    args = DPOConfig(**dpo_config_kwargs(config, runtime, has_val=data.val is not None))
    model, peft_config, use_liger = load_model(config, runtime, state)
    trainer, throughput = build_trainer(
        config, runtime, args, model, tokenizer, peft_config, data, use_liger, state, extra_callbacks
    )
    _probe_batch_size(trainer, config, runtime, state)

    started = time.time()
    if runtime.resume_from:
        logger.info("resuming from %s", runtime.resume_from)
    train_result = trainer.train(resume_from_checkpoint=runtime.resume_from)
    runtime_s = time.time() - started
    final = evaluate_final(trainer, data, config)

    history = list(trainer.state.log_history)
    checks = health.diagnose(
        history, trainer.state.max_steps, config.health.warmup_fraction, config.health.stuck_loss_tolerance
    )
    for message in health.warnings_for(checks):
        logger.warning("training health: %s", message)

    save_final(trainer, tokenizer, config, runtime, output_dir, state)

    metrics = {
        "fingerprint": runtime.fingerprint,
        "resumed_from": Path(runtime.resume_from).name if runtime.resume_from else None,
        "num_processes": state.num_processes,
        "device": str(state.device.type),
        "precision": runtime.precision,
        "global_step": trainer.state.global_step,
        "runtime_s": round(runtime_s, 2),
        "train": {**train_result.metrics, **final["train"]},
        "eval": final["eval"],
        "per_category": final["per_category"],
        "health": {"checks": checks, "warnings": health.warnings_for(checks)},
        "throughput": throughput.summary(),
        "history": history,
    }
    if state.is_main_process:
        trainer.save_state()
        write_json_atomic(output_dir / METRICS_FILE, metrics)
    state.wait_for_everyone()
    return metrics


def build_trainer(
    config: TrainingConfig,
    runtime: RuntimeSpec,
    args,
    model,
    tokenizer,
    peft_config,
    data: PreferenceData,
    use_liger: bool,
    state,
    extra_callbacks: tuple = (),
):
    """The trainer for this run, and its throughput callback (read for the metrics)."""
    from edu_bias_pipeline.dpo.callbacks import HealthCallback, ThroughputCallback
    from edu_bias_pipeline.dpo.model import skip_adapter_input_casts
    from edu_bias_pipeline.dpo.trainer import EduBiasDPOTrainer

    logger.info(
        "throughput settings: batch %d x accum %d, precompute_ref_log_probs=%s, sampling=%s, attention=%s "
        "(sdpa kernels %s), liger=%s, torch_compile=%s, probe_batch_size=%s, precision=%s, "
        "gather_step_metrics=%s",
        config.per_device_train_batch_size,
        config.gradient_accumulation_steps,
        config.precompute_ref_log_probs,
        config.train_sampling_strategy,
        config.attn_implementation or "default",
        ",".join(config.sdpa_backends) if config.sdpa_backends and not runtime.use_cpu else "torch's choice",
        use_liger,
        config.torch_compile,
        config.probe_batch_size,
        runtime.precision,
        config.gather_step_metrics,
    )
    reference_cache, salt = None, ""
    if (
        config.precompute_ref_log_probs
        and config.reference_cache_dir
        and patches.applies("reference_log_probs_cache")
    ):
        reference_cache = Path(config.reference_cache_dir)
        reference_cache.mkdir(parents=True, exist_ok=True)
        salt = (
            f"{runtime.precision}|liger={use_liger}|sdpa={config.sdpa_backends}|attn={config.attn_implementation}"
            f"|ld_alpha={args.ld_alpha}"
        )
    # only where ranks meet at all, and only on the TRL this was checked against
    local_step_metrics = (
        not config.gather_step_metrics
        and state.num_processes > 1
        and patches.applies("rank_local_step_metrics")
    )
    if local_step_metrics:
        logger.info("step metrics: kept on each rank, averaged over the ranks at each logging step")
    throughput = ThroughputCallback()
    callbacks = [
        HealthCallback(config.health),
        throughput,
        checkpoint_trust.make_callback(),
        *extra_callbacks,
    ]
    if runtime.deepspeed_config is not None and config.deepspeed.foreach_grad_norm:
        callbacks.append(zero_grad_norm.callback())
    trainer = EduBiasDPOTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval_dataset(config.precompute_ref_log_probs),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        reference_cache=reference_cache,
        reference_cache_salt=salt,
        local_step_metrics=local_step_metrics,
    )
    trainer.category_eval_datasets = data.per_category
    if isinstance(trainer.eval_dataset, dict):  # registered for their reference log-probs: taken apart again
        prepared = dict(trainer.eval_dataset)
        trainer.eval_dataset = prepared.pop(ALL_VAL)
        trainer.category_eval_datasets = prepared
    if config.use_sample_weights:
        trainer.sample_weights = [float(r.get("sample_weight", 1.0) or 1.0) for r in data.train_rows]

    if config.lora.enabled and runtime.precision in ("bf16", "fp16"):
        skipped = skip_adapter_input_casts(trainer.model)
        if skipped:
            logger.info("LoRA: %d adapted layers take half-precision inputs as they are", skipped)
    if trainer.is_deepspeed_enabled:
        logger.info("DeepSpeed ZeRO stage %s engine", trainer.accelerator.state.deepspeed_plugin.zero_stage)
    return trainer, throughput


def _probe_batch_size(trainer, config: TrainingConfig, runtime: RuntimeSpec, state) -> None:
    if not config.probe_batch_size:
        return
    if runtime.use_cpu or trainer.is_deepspeed_enabled:
        # no out-of-memory to avoid on CPU; DeepSpeed places the weights only at train()
        logger.info("probe_batch_size: not probed (%s)", "CPU" if runtime.use_cpu else "DeepSpeed")
    elif patches.applies("batch_size_probe"):
        import torch

        budget = int(HEADROOM * torch.cuda.get_device_properties(state.device).total_memory)
        fit_batch_size(trainer, completion_lengths(trainer.train_dataset), budget)


def _setup_logging(output_dir: Path, is_main: bool) -> None:
    import transformers

    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(output_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.set_verbosity_warning()
    import datasets

    # Per-category evaluation maps small datasets many times; their progress bars would drown the log.
    datasets.disable_progress_bars()


def _oom_message(config: TrainingConfig) -> str:
    return (
        f"out of memory while training {config.model_name_or_path} (per_device_train_batch_size="
        f"{config.per_device_train_batch_size}, max_length={config.max_length}, lora={config.lora.enabled}, "
        f"qlora={config.lora.qlora}). Try: training.lora.enabled: true (LoRA) or training.lora.qlora: true "
        "(4-bit QLoRA, GPU); a smaller training.per_device_train_batch_size with a larger "
        "gradient_accumulation_steps; training.gradient_checkpointing: true; a smaller training.max_length; "
        "or mode: deepspeed with deepspeed.zero_stage: 3 / offload_optimizer: true."
    )


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


if __name__ == "__main__":
    sys.exit(main())
