"""The project's `DPOTrainer`: per-bias_type evaluation, the old metric names, weighted or length-grouped
sampling, a reference log-prob cache shared by runs, and rank-local step metrics.

Its overrides of TRL's and transformers' private methods are declared in `edu_bias_pipeline.patches`, with
the releases they were checked against; the launched process refuses to start outside those
(`dpo_trainer`) or turns the optional ones off.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer
from trl import DPOTrainer

from edu_bias_pipeline import patches
from edu_bias_pipeline.dpo.contract import legacy_metrics
from edu_bias_pipeline.dpo.data import completion_lengths, reference_cache_key

logger = logging.getLogger("edu_bias_pipeline.dpo")

# TRL's columns holding the precomputed reference log-probs, and the marker of a complete cache entry.
REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
REFERENCE_CACHE_MARKER = "edu_bias_reference.key"


def _this_rank(data, *args, **kwargs):
    return data


class EduBiasDPOTrainer(DPOTrainer):
    """DPOTrainer + per-bias_type evaluation, legacy metric names and weighted sampling.

    Beyond DPOTrainer's arguments: `reference_cache` (a directory keeping the precomputed reference
    log-probs across runs, None: this run only) with `reference_cache_salt` (the numerics they depend on),
    and `local_step_metrics` (TRL's step metrics kept on each rank until a logging step). Set before TRL's
    constructor runs, which computes the reference log-probs. `category_eval_datasets` and
    `sample_weights` are set once the trainer has prepared the datasets.
    """

    category_eval_datasets: dict[str, Any] = {}
    sample_weights: list[float] | None = None
    _quiet_eval = False

    reference_cache: Path | None = None
    reference_cache_salt = ""
    local_step_metrics = False

    def __init__(
        self,
        *args: Any,
        reference_cache: Path | None = None,
        reference_cache_salt: str = "",
        local_step_metrics: bool = False,
        **kwargs: Any,
    ) -> None:
        self.reference_cache = reference_cache
        self.reference_cache_salt = reference_cache_salt
        self.local_step_metrics = local_step_metrics
        super().__init__(*args, **kwargs)

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
