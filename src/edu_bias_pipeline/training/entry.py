"""The launched training process: `python -m edu_bias_pipeline.training.entry RUN.json`.

Runs the same under plain python, `accelerate launch` and DeepSpeed. `RUN.json` is written by the Kedro
node: `{"config": TrainingConfig, "runtime": RuntimeSpec}`; nothing here reads configuration from env vars
(the launchers' own RANK/WORLD_SIZE plumbing aside, which accelerate handles).

TRL's `DPOTrainer` does the training maths. This module adds what the project needs around it: the
prompt contract (`pairs.render_prompt`), LoRA/QLoRA, per-bias_type evaluation, the old scripts' metric
names, health diagnostics, resume, an OOM hint, and an atomic `final/` directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from edu_bias_pipeline import patches
from edu_bias_pipeline.files import write_json_atomic
from edu_bias_pipeline.pairs import render_prompt
from edu_bias_pipeline.scoring import METADATA_FILE
from edu_bias_pipeline.training import checkpoint_trust, health, zero_grad_norm
from edu_bias_pipeline.training.batch_size import HEADROOM, fit_batch_size
from edu_bias_pipeline.training.config import TrainingConfig
from edu_bias_pipeline.training.permissions import apply_umask

logger = logging.getLogger("edu_bias_pipeline.training")

CONTRACT_FILE = METADATA_FILE  # final/edu_bias_training.json, read back by scoring (evaluation and the CLI)
METRICS_FILE = "edu_bias_metrics.json"  # in the output dir; the node turns it into training_metrics.json
FINAL_DIR = "final"
# Name of the whole val split among the eval datasets registered at construction (precomputed ref log-probs).
ALL_VAL = "__all__"
FINAL_TMP = ".final.tmp"
# TRL's tokenised columns, and those holding the precomputed reference log-probs.
TOKEN_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]
REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
REFERENCE_CACHE_MARKER = "edu_bias_reference.key"
EXIT_OOM = 3
EXIT_FAILED = 2

# The old scripts' metric names. Keys logged without the "train/" prefix because the wandb and tensorboard
# integrations prefix train-time keys with "train/" themselves (`loss` is already shown as `train/loss`).
LEGACY_ALIASES = {
    "reward_accuracy": "rewards/accuracies",
    "reward_margin": "rewards/margins",
    "better_sample_reward": "rewards/chosen",
    "worse_sample_reward": "rewards/rejected",
    "lr": "learning_rate",
}


class RuntimeSpec(BaseModel):
    """What the node resolved for this run (paths, hardware decisions); not user configuration."""

    model_config = ConfigDict(extra="forbid")

    model_path: str
    base_model_id: str  # what final/edu_bias_training.json records as the base/reference model
    train_file: str
    val_file: str
    run_dir: str
    precision: str = "fp32"
    use_cpu: bool = True
    deepspeed_config: str | None = None
    resume_from: str | None = None
    fingerprint: str = ""


def legacy_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """The old names for a train-time log entry (empty for eval entries)."""
    if any(k.startswith("eval_") for k in logs):
        return {}
    return {alias: logs[src] for alias, src in LEGACY_ALIASES.items() if src in logs}


def history_record(logs: dict[str, Any]) -> dict[str, Any]:
    """A log entry under the names tracking tools show: `train/…`, `eval/…` (transformers' rewrite_logs)."""
    out: dict[str, Any] = {}
    for key, value in logs.items():
        if key in ("step", "epoch"):
            out[key] = value
        elif key.startswith("eval_"):
            out["eval/" + key[5:]] = value
        else:
            out["train/" + key] = value
    return out


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


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def build_dataset(rows: list[dict[str, Any]], tokenizer: Any, instruction: str):
    """TRL's standard (non-conversational) preference format, prompt already rendered (data contract)."""
    from datasets import Dataset

    return Dataset.from_dict(
        {
            "prompt": [render_prompt(tokenizer, r.get("prompt"), instruction) for r in rows],
            "chosen": [r["chosen"] for r in rows],
            "rejected": [r["rejected"] for r in rows],
        }
    )


def file_backed(dataset, path: Path, state):
    """The dataset saved under `path` (once per content) and memory-mapped back, on every rank.

    TRL writes its tokenised copies and its precomputed reference log-probs next to a dataset's files. An
    in-memory dataset has none, so each rank would look in its own temporary directory (bare TRL's
    `FileNotFoundError` under a multi-process launch). Saved in the run directory, the dataset keeps its
    fingerprint, so all ranks share TRL's cache files and an identical rerun (same data, same reference
    model: TRL keys the cache on both) reuses them.
    """
    import hashlib

    from datasets import load_from_disk

    digest = hashlib.sha256(
        json.dumps(dataset.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8")
    ).hexdigest()
    marker = path / "edu_bias_content.sha256"
    with state.main_process_first():
        if state.is_main_process and not (marker.exists() and marker.read_text() == digest):
            shutil.rmtree(path, ignore_errors=True)
            dataset.save_to_disk(str(path))
            marker.write_text(digest)
        return load_from_disk(str(path))


def completion_lengths(dataset) -> list[int]:
    """Tokens of a pair's longer sequence (prompt + longer completion), from TRL's tokenised columns."""
    import pyarrow.compute as pc

    table = dataset.select_columns(TOKEN_COLUMNS).with_format("arrow")[:]
    prompt = pc.list_value_length(table.column("prompt_ids"))
    longest = pc.max_element_wise(
        pc.list_value_length(table.column("chosen_ids")), pc.list_value_length(table.column("rejected_ids"))
    )
    return pc.add(prompt, longest).to_pylist()


def resolve_liger(config: TrainingConfig, runtime: RuntimeSpec) -> bool:
    if config.use_liger_kernel != "auto":
        return bool(config.use_liger_kernel)
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


def reference_cache_key(dataset, model_hash: str, salt: str) -> str:
    """Key of a dataset's reference log-probs: its token ids (data, prompt template, tokenizer and
    truncation in one), the reference model's weights and the numerics they were computed with."""
    import hashlib

    import numpy as np
    import pyarrow.compute as pc

    table = dataset.select_columns(TOKEN_COLUMNS).with_format("arrow")[:]
    digest = hashlib.sha256()
    for name in TOKEN_COLUMNS:
        # values and lengths only: arrow chunking and schema metadata differ between equal datasets
        column = table.column(name).combine_chunks()
        digest.update(np.asarray(pc.list_value_length(column), dtype=np.int64).tobytes())
        digest.update(np.asarray(column.flatten(), dtype=np.int64).tobytes())
    digest.update(f"{model_hash}|{salt}".encode())
    return digest.hexdigest()[:24]


def _this_rank(data, *args, **kwargs):
    return data


def make_trainer_class():
    import torch
    from transformers import Trainer
    from trl import DPOTrainer

    class EduBiasDPOTrainer(DPOTrainer):
        """DPOTrainer + per-bias_type evaluation, legacy metric names and weighted sampling."""

        category_eval_datasets: dict[str, Any] = {}
        sample_weights: list[float] | None = None
        _quiet_eval = False

        reference_cache: Path | None = None
        reference_cache_salt = ""
        local_step_metrics = False  # TRL's step metrics kept on each rank until a logging step

        def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
            # TRL's own cache is keyed by a fingerprint that hashes the run's whole DPOConfig (output_dir
            # included), so a new run never finds it. This one is keyed by what the values depend on: the
            # token ids, the reference weights and the numerics (precision, kernels).
            weights_hash = self.reference_weights_hash()
            if self.reference_cache is None or weights_hash is None:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            from datasets import concatenate_datasets, load_from_disk

            key = reference_cache_key(dataset, weights_hash, self.reference_cache_salt)
            path = self.reference_cache / f"ref-{key}"
            if (path / REFERENCE_CACHE_MARKER).exists():
                logger.info("reference log-probs for %s: reused from %s", name, path)
                return concatenate_datasets([dataset, load_from_disk(str(path))], axis=1)
            out = super()._precompute_ref_logps(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
                out.select_columns(list(REFERENCE_COLUMNS)).save_to_disk(str(tmp))
                (tmp / REFERENCE_CACHE_MARKER).write_text(key, encoding="utf-8")
                shutil.rmtree(path, ignore_errors=True)
                tmp.replace(path)
                logger.info("reference log-probs for %s: cached in %s", name, path)
            self.accelerator.wait_for_everyone()
            return out

        def reference_weights_hash(self) -> str | None:
            """TRL's hash of the reference weights (with precomputed reference log-probs), or None where it
            does not identify them: under ZeRO-3 the model is partitioned as it loads, so TRL hashes empty
            tensors and two base models of one architecture would share a cache entry."""
            if self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3:
                return None
            return self._precompute_model_hash

        def _run_epoch(self, *args, **kwargs):
            # Resumed from a checkpoint already at max_steps: transformers would still run one optimizer step
            # of the epoch before it checks the step count (a run to max_steps: 4 resumed at checkpoint-4
            # ended at step 5). The checkpoint's weights are already loaded; nothing is left to train.
            at_end = self.state.global_step >= self.state.max_steps > 0
            if at_end and patches.applies("resume_at_max_steps"):
                logger.info(
                    "resumed at step %d of max_steps %d: no further steps",
                    self.state.global_step,
                    self.state.max_steps,
                )
                self.control.should_training_stop = True
                return None
            return super()._run_epoch(*args, **kwargs)

        def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
            # Under DeepSpeed, transformers casts every floating input to the engine's dtype. Cached reference
            # log-probs are sums over ~100 tokens: bf16 keeps 8 bits of them (steps of 4 nats near -1000), so
            # a ZeRO-2 run on an H100 started at a loss of 1.115 instead of ln 2. They stay float32.
            kept = {k: inputs.pop(k) for k in REFERENCE_COLUMNS if k in inputs}
            prepared = super()._prepare_inputs(inputs)
            for key, value in kept.items():
                prepared[key] = value.to(self.args.device, dtype=torch.float32)
            return prepared

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (model.training and self.local_step_metrics):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # TRL's _compute_loss gathers 15 logging values across ranks and reads them with 13 .item()
            # calls: every rank's CPU stops there until the slowest rank arrives. These are its only uses of
            # the accelerator's gathers in a training step (none feeds the loss), so for the step they
            # return this rank's values; log() averages them over the ranks once per logging step.
            accelerator = self.accelerator
            accelerator.gather = accelerator.gather_for_metrics = _this_rank
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                del accelerator.gather, accelerator.gather_for_metrics

        def _over_ranks(self, metrics: dict[str, float], average: bool) -> dict[str, float]:
            """Training metrics averaged over the ranks (`average`), and TRL's running `num_tokens`, which
            evaluation logs too and which counts this rank's training tokens only, summed."""
            keys = sorted(metrics) if average else [k for k in metrics if k == "num_tokens"]
            if not keys:
                return metrics
            values = torch.tensor(
                [float(metrics[k]) for k in keys], dtype=torch.float64, device=self.accelerator.device
            )
            values = self.accelerator.reduce(values, reduction="sum").tolist()
            ranks = self.accelerator.num_processes
            reduced = {k: v if k == "num_tokens" else v / ranks for k, v in zip(keys, values, strict=True)}
            return {**metrics, **reduced}

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            # Mirrors DPOTrainer.log (average TRL's buffered metrics into the entry), then adds the old names.
            # During per-category evaluation nothing is logged: the caller reads the returned dict.
            mode = "train" if self.model.training else "eval"
            metrics = {key: sum(val) / len(val) for key, val in self._metrics[mode].items()}
            if metrics and self.local_step_metrics:
                # every rank logs at the same points with the same keys (the Trainer gathers its loss there)
                metrics = self._over_ranks(metrics, average=mode == "train")
            if mode == "eval":
                metrics = {f"eval_{key}": val for key, val in metrics.items()}
            logs.update(metrics)
            self._metrics[mode].clear()
            if self._quiet_eval:
                return
            logs.update(legacy_metrics(logs))
            super(DPOTrainer, self).log(logs, start_time)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            if eval_dataset is not None or self._quiet_eval or not self.category_eval_datasets:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            metrics = super().evaluate(None, ignore_keys, metric_key_prefix)
            per_category = self.evaluate_categories(ignore_keys)
            if per_category:
                super(DPOTrainer, self).log(per_category)
                metrics.update(per_category)
            return metrics

        def evaluate_quietly(self, dataset, prefix: str, ignore_keys=None) -> dict[str, float]:
            """Evaluate one dataset without logging; returns `{metric: value}` without the prefix."""
            self._quiet_eval = True
            try:
                if self.precompute_ref_logps and REFERENCE_COLUMNS[0] in getattr(dataset, "column_names", ()):
                    # Tokenised and given its reference log-probs at construction: TRL's evaluate would refuse
                    # it after step 0 (full fine-tuning keeps no reference model), and has nothing left to do.
                    out = Trainer.evaluate(self, dataset, ignore_keys, metric_key_prefix=prefix)
                else:
                    out = super().evaluate(dataset, ignore_keys, metric_key_prefix=prefix)
            finally:
                self._quiet_eval = False
            # TRL renames only the loss with the prefix; its reward metrics come back as eval_rewards/*.
            result = {}
            for key, value in out.items():
                if key.startswith(prefix + "_"):
                    result[key[len(prefix) + 1 :]] = value
                elif key.startswith("eval_"):
                    result[key[5:]] = value
            return result

        def evaluate_categories(self, ignore_keys=None) -> dict[str, float]:
            flat: dict[str, float] = {}
            for category, dataset in self.category_eval_datasets.items():
                m = self.evaluate_quietly(dataset, f"eval_{category}", ignore_keys)
                for key in (
                    "loss",
                    "rewards/accuracies",
                    "rewards/margins",
                    "rewards/chosen",
                    "rewards/rejected",
                ):
                    if key in m:
                        flat[f"eval_{category}/{key}"] = m[key]
            return flat

        def _get_train_sampler(self, train_dataset=None):
            weights = self.sample_weights
            if weights and len(set(weights)) > 1:
                if self.args.train_sampling_strategy != "random":
                    logger.info(
                        "sample weights differ: weighted sampling instead of %s",
                        self.args.train_sampling_strategy,
                    )
                generator = torch.Generator().manual_seed(self.args.seed)
                return torch.utils.data.WeightedRandomSampler(
                    weights, num_samples=len(weights), replacement=True, generator=generator
                )
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if self.args.train_sampling_strategy == "group_by_length":
                return self._length_grouped(
                    dataset, self.args.train_batch_size * self.args.gradient_accumulation_steps
                )
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            if self.args.train_sampling_strategy == "group_by_length" and eval_dataset is not None:
                return self._length_grouped(eval_dataset, self.args.eval_batch_size)
            return super()._get_eval_sampler(eval_dataset)

        def _length_grouped(self, dataset, per_process: int):
            """transformers' LengthGroupedSampler with a step of all ranks as its batch.

            Its length groups are a whole number of its batch (min(n // (4 x batch), 50) of them), and
            accelerate deals the sampler's batches to the ranks in turn, so with the per-process pairs of a
            step (per-device batch x accumulation; evaluation: eval batch) times the ranks, one step of all
            ranks never spans two groups. Sized to one rank's share, a group ended inside a step whenever
            that multiplier was not a multiple of the rank count (with the sample data at batch 64, every
            step): one rank padded to the next group's longest pairs while the other had the last group's
            shortest, and waited for it at every gradient reduction.
            """
            from transformers.trainer_pt_utils import LengthGroupedSampler

            # transformers looks for `input_ids` or a `length` column, which TRL's preference rows lack
            # (and a `length` column would be dropped as unused before the sampler is built).
            return LengthGroupedSampler(
                per_process * self.args.world_size,
                lengths=completion_lengths(dataset),
                generator=torch.Generator().manual_seed(self.args.seed),
            )

    return EduBiasDPOTrainer


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


# Steps left out of the steady-state throughput: kernel autotuning, allocator growth and the first
# collectives make the first steps slow, so train_runtime (which includes them) understates a long run.
THROUGHPUT_WARMUP_STEPS = 5


def make_callbacks(config: TrainingConfig):
    from transformers import TrainerCallback

    class HealthCallback(TrainerCallback):
        """Warns once per health check as soon as it fires, and logs every entry to train.log."""

        def __init__(self) -> None:
            self.fired: set[str] = set()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            logger.info("step %s: %s", state.global_step, json.dumps(logs, default=str, ensure_ascii=False))
            checks = health.diagnose(
                state.log_history,
                state.max_steps,
                config.health.warmup_fraction,
                config.health.stuck_loss_tolerance,
            )
            for name, fired in checks.items():
                if fired and name not in self.fired:
                    self.fired.add(name)
                    logger.warning("training health: %s", health.MESSAGES[name])

    class ThroughputCallback(TrainerCallback):
        """Training pairs per second after the first THROUGHPUT_WARMUP_STEPS optimizer steps (wall clock).

        Evaluations and checkpoints between steps are left out, so the figure does not depend on eval_steps
        or save_steps. No synchronisation of its own: TRL reads its metrics with `.item()` after every
        forward pass, which keeps the host within one step of the GPU, so over many steps the wall clock
        gives the GPU's rate.
        """

        def __init__(self) -> None:
            self.t0 = self.t1 = self.last_end = self.excluded = 0.0
            self.start = self.steps = self.pairs_per_step = 0
            self.paused = False

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = state.global_step  # a resumed run warms up again

        def on_evaluate(self, args, state, control, **kwargs):
            self.paused = True

        def on_save(self, args, state, control, **kwargs):
            self.paused = True

        def on_step_begin(self, args, state, control, **kwargs):
            if self.paused and self.t0:  # an evaluation or a save ran since the last step ended
                self.excluded += time.perf_counter() - self.last_end
            self.paused = False

        def on_step_end(self, args, state, control, **kwargs):
            now = self.last_end = time.perf_counter()
            done = state.global_step - self.start
            if done == THROUGHPUT_WARMUP_STEPS:
                self.t0 = now
            elif done > THROUGHPUT_WARMUP_STEPS:
                self.t1, self.steps = now, done - THROUGHPUT_WARMUP_STEPS
                # read at every step: the batch-size probe may change both before training
                self.pairs_per_step = (
                    args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
                )

        def summary(self) -> dict[str, Any]:
            seconds = self.t1 - self.t0 - self.excluded
            rate = self.steps * self.pairs_per_step / seconds if self.steps else None
            return {
                "pairs_per_s_after_warmup": round(rate, 2) if rate else None,
                "timed_steps": self.steps,
                "throughput_warmup_steps": THROUGHPUT_WARMUP_STEPS,
                "pairs_per_step": self.pairs_per_step,
                "eval_and_save_s_left_out": round(self.excluded, 2),
            }

    return HealthCallback(), ThroughputCallback()


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
        # our probe (batch_size.fit_batch_size) replaces transformers' retry-after-OOM, which keeps the failed
        # attempt's weight updates
        auto_find_batch_size=False,
        # applied by `run` before the reference pass instead of by the Trainer at train()
        use_liger_kernel=False,
        # every parameter takes part in the loss (full model or adapter): skip DDP's unused-parameter scan
        ddp_find_unused_parameters=False,
    )
    kwargs.update(config.extra_training_args)
    return kwargs


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


def run(config: TrainingConfig, runtime: RuntimeSpec, extra_callbacks: tuple = ()) -> dict[str, Any]:
    """Train, evaluate and save; `extra_callbacks` lets benchmarks/train_throughput.py time this very path."""
    import torch
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    state = PartialState(cpu=runtime.use_cpu) if runtime.use_cpu else PartialState()
    output_dir = Path(config.output_dir)
    _setup_logging(output_dir, state.is_main_process)
    logger.info("training process %d/%d on %s", state.process_index, state.num_processes, state.device)

    tokenizer = AutoTokenizer.from_pretrained(runtime.model_path, trust_remote_code=config.trust_remote_code)
    train_rows = load_rows(runtime.train_file)
    val_rows = load_rows(runtime.val_file) if Path(runtime.val_file).exists() else []
    train_ds = build_dataset(train_rows, tokenizer, config.instruction)
    val_ds = build_dataset(val_rows, tokenizer, config.instruction) if val_rows else None

    categories: dict[str, list[dict[str, Any]]] = {}
    for row in val_rows:
        categories.setdefault(str(row.get("bias_type") or "unknown"), []).append(row)

    args = DPOConfig(**dpo_config_kwargs(config, runtime, has_val=val_ds is not None))

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

    category_datasets: dict[str, Any] = {}
    if config.eval_per_bias_type and val_ds is not None:
        category_datasets = {
            name: build_dataset(rows, tokenizer, config.instruction)
            for name, rows in sorted(categories.items())
        }
    if config.precompute_ref_log_probs:
        cache = Path(runtime.run_dir) / "datasets"
        train_ds = file_backed(train_ds, cache / "train", state)
        if val_ds is not None:
            val_ds = file_backed(val_ds, cache / "val", state)
        category_datasets = {
            name: file_backed(ds, cache / f"val_{i}", state)
            for i, (name, ds) in enumerate(category_datasets.items())
        }
    eval_dataset: Any = val_ds
    if config.precompute_ref_log_probs and val_ds is not None:
        # TRL computes reference log-probs only for the datasets it is given at construction (before the
        # policy moves): register the per-category val sets there too, then take them back apart.
        eval_dataset = {ALL_VAL: val_ds, **category_datasets}
    logger.info(
        "throughput settings: batch %d x accum %d, precompute_ref_log_probs=%s, sampling=%s, attention=%s "
        "(sdpa kernels %s), liger=%s, torch_compile=%s, auto_find_batch_size=%s, precision=%s, "
        "gather_step_metrics=%s",
        config.per_device_train_batch_size,
        config.gradient_accumulation_steps,
        config.precompute_ref_log_probs,
        config.train_sampling_strategy,
        config.attn_implementation or "default",
        ",".join(config.sdpa_backends) if config.sdpa_backends and not runtime.use_cpu else "torch's choice",
        use_liger,
        config.torch_compile,
        config.auto_find_batch_size,
        runtime.precision,
        config.gather_step_metrics,
    )
    trainer_cls = make_trainer_class()
    if (
        config.precompute_ref_log_probs
        and config.reference_cache_dir
        and patches.applies("reference_log_probs_cache")
    ):
        # set on the class: TRL computes the reference log-probs inside __init__
        trainer_cls.reference_cache = Path(config.reference_cache_dir)
        trainer_cls.reference_cache_salt = (
            f"{runtime.precision}|liger={use_liger}|sdpa={config.sdpa_backends}|attn={config.attn_implementation}"
            f"|ld_alpha={args.ld_alpha}"
        )
        trainer_cls.reference_cache.mkdir(parents=True, exist_ok=True)
    # only where ranks meet at all, and only on the TRL this was checked against
    trainer_cls.local_step_metrics = (
        not config.gather_step_metrics
        and state.num_processes > 1
        and patches.applies("rank_local_step_metrics")
    )
    if trainer_cls.local_step_metrics:
        logger.info("step metrics: kept on each rank, averaged over the ranks at each logging step")
    health_callback, throughput_callback = make_callbacks(config)
    if runtime.deepspeed_config is not None and config.deepspeed.foreach_grad_norm:
        extra_callbacks = (*extra_callbacks, zero_grad_norm.callback())
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[health_callback, throughput_callback, checkpoint_trust.make_callback(), *extra_callbacks],
    )
    if isinstance(trainer.eval_dataset, dict):
        prepared = dict(trainer.eval_dataset)
        trainer.eval_dataset = prepared.pop(ALL_VAL)
        category_datasets = prepared
    if config.use_sample_weights:
        trainer.sample_weights = [float(r.get("sample_weight", 1.0) or 1.0) for r in train_rows]
    trainer.category_eval_datasets = category_datasets

    if config.lora.enabled and runtime.precision in ("bf16", "fp16"):
        skipped = skip_adapter_input_casts(trainer.model)
        if skipped:
            logger.info("LoRA: %d adapted layers take half-precision inputs as they are", skipped)
    if trainer.is_deepspeed_enabled:
        logger.info("DeepSpeed ZeRO stage %s engine", trainer.accelerator.state.deepspeed_plugin.zero_stage)
    if config.auto_find_batch_size:
        if runtime.use_cpu or trainer.is_deepspeed_enabled:
            # no out-of-memory to avoid on CPU; DeepSpeed places the weights only at train()
            logger.info("auto_find_batch_size: not probed (%s)", "CPU" if runtime.use_cpu else "DeepSpeed")
        elif patches.applies("batch_size_probe"):
            import torch

            budget = int(HEADROOM * torch.cuda.get_device_properties(state.device).total_memory)
            fit_batch_size(trainer, completion_lengths(trainer.train_dataset), budget)
    started = time.time()
    if runtime.resume_from:
        logger.info("resuming from %s", runtime.resume_from)
    train_result = trainer.train(resume_from_checkpoint=runtime.resume_from)
    runtime_s = time.time() - started

    # Final numbers: the whole val split (overall + per bias_type) and the whole train set, after training.
    final_eval: dict[str, Any] = {}
    per_category: dict[str, dict[str, float]] = {}
    if val_ds is not None:
        final_eval = trainer.evaluate_quietly(trainer.eval_dataset, "eval_final")
        for name, dataset in trainer.category_eval_datasets.items():
            m = trainer.evaluate_quietly(dataset, f"eval_{name}")
            per_category[name] = {**m, "n_pairs": len(categories[name])}
    # With precomputed reference log-probs the prepared train set carries them (the reference is gone by now).
    train_eval = trainer.evaluate_quietly(
        trainer.train_dataset if config.precompute_ref_log_probs else train_ds, "train_final"
    )

    history = list(trainer.state.log_history)
    checks = health.diagnose(
        history, trainer.state.max_steps, config.health.warmup_fraction, config.health.stuck_loss_tolerance
    )
    for message in health.warnings_for(checks):
        logger.warning("training health: %s", message)

    _save_final(trainer, tokenizer, config, runtime, output_dir, state)

    metrics = {
        "fingerprint": runtime.fingerprint,
        "resumed_from": Path(runtime.resume_from).name if runtime.resume_from else None,
        "num_processes": state.num_processes,
        "device": str(state.device.type),
        "precision": runtime.precision,
        "global_step": trainer.state.global_step,
        "runtime_s": round(runtime_s, 2),
        "train": {**train_result.metrics, **train_eval},
        "eval": final_eval,
        "per_category": per_category,
        "health": {"checks": checks, "warnings": health.warnings_for(checks)},
        "throughput": throughput_callback.summary(),
        "history": history,
    }
    if state.is_main_process:
        trainer.save_state()
        write_json_atomic(output_dir / METRICS_FILE, metrics)
    state.wait_for_everyone()
    return metrics


def _save_final(
    trainer, tokenizer, config: TrainingConfig, runtime: RuntimeSpec, output_dir: Path, state
) -> None:
    """Write the model to a temp dir and rename it to `final/`: readers never see a half-written model."""
    tmp = output_dir / FINAL_TMP
    final = output_dir / FINAL_DIR
    if state.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    state.wait_for_everyone()
    trainer.save_model(str(tmp))  # every rank: ZeRO-3 gathers the shards here
    if state.is_main_process:
        tokenizer.save_pretrained(str(tmp))
        contract = {
            "base_model": runtime.base_model_id,
            "is_adapter": bool(config.lora.enabled),
            "beta": float(trainer.args.beta),
            "instruction": config.instruction,
            "max_length": int(config.max_length),
            "trust_remote_code": bool(config.trust_remote_code),
            # evaluation keys its own cached reference log-probs by it instead of hashing the weights again
            "reference_sha256": trainer.reference_weights_hash(),
            # the run that wrote these weights: evaluation checks trained_model.json names this same run
            "fingerprint": runtime.fingerprint,
            "global_step": int(trainer.state.global_step),
        }
        (tmp / CONTRACT_FILE).write_text(json.dumps(contract, indent=2, ensure_ascii=False), encoding="utf-8")
        if (tmp / "training_args.bin").exists():
            shutil.copy2(tmp / "training_args.bin", output_dir / "training_args.bin")
        apply_umask(tmp)  # save_pretrained writes model.safetensors 0600 whatever the umask
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        logger.info("final %s written to %s", "adapter" if config.lora.enabled else "model", final)
    state.wait_for_everyone()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m edu_bias_pipeline.training.entry RUN.json\n")
        return EXIT_FAILED
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    config = TrainingConfig.model_validate(spec["config"])
    runtime = RuntimeSpec.model_validate(spec["runtime"])
    error_file = Path(runtime.run_dir) / "error.json"
    try:
        patches.require("dpo_trainer")  # each machine checks its own libraries
        run(config, runtime)
    except Exception as exc:  # noqa: BLE001 - reported to the node through error.json and the exit code
        oom = _is_oom(exc)
        message = _oom_message(config) if oom else f"{type(exc).__name__}: {exc}"
        logger.exception("training failed: %s", message)
        try:
            write_json_atomic(error_file, {"kind": "oom" if oom else "error", "message": message})
        except OSError:
            pass
        return EXIT_OOM if oom else EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
