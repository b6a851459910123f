"""Callbacks of the launched training process: health warnings as they fire, steady-state throughput."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from transformers import TrainerCallback

from edu_bias_pipeline.dpo import health
from edu_bias_pipeline.dpo.config import HealthSettings

logger = logging.getLogger("edu_bias_pipeline.dpo")

# Steps left out of the steady-state throughput: kernel autotuning, allocator growth and the first
# collectives make the first steps slow, so train_runtime (which includes them) understates a long run.
THROUGHPUT_WARMUP_STEPS = 5


class HealthCallback(TrainerCallback):
    """Warns once per health check as soon as it fires, and logs every entry to train.log."""

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self.fired: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        logger.info("step %s: %s", state.global_step, json.dumps(logs, default=str, ensure_ascii=False))
        checks = health.diagnose(
            state.log_history,
            state.max_steps,
            self.settings.warmup_fraction,
            self.settings.stuck_loss_tolerance,
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
