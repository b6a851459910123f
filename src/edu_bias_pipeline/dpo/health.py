"""Training-health diagnostics over TRL's log history: pure functions, no torch.

A DPO run that is not learning usually shows one of a few signatures; each check names one, and the
result goes both to the log (as a warning, once) and into the metrics file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

LN2 = math.log(2.0)  # DPO sigmoid loss when chosen and rejected rewards are equal
NAN_WITNESSES = ("loss", "rewards/chosen", "rewards/rejected")

# check name → the warning shown when it fires
MESSAGES = {
    "nan_loss": "training loss became NaN/inf: lower the learning rate, check precision (fp16 overflow) "
    "and data",
    "loss_stuck_at_ln2": "loss is stuck near ln 2 ≈ 0.693 after warm-up: the policy is not moving away "
    "from the "
    "reference (learning rate too low, LoRA target modules wrong, or the model is frozen)",
    "reward_accuracy_at_chance": "train reward accuracy is ≤ 0.5 after warm-up: the model does not "
    "prefer the "
    "chosen (unbiased) statements; check the data orientation and the learning rate",
    "rewards_both_falling": "chosen and rejected rewards are both falling: the model lowers the "
    "likelihood of "
    "both answers (likelihood displacement); consider a larger beta or a lower learning rate",
}


def _train_logs(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [h for h in history if "loss" in h and "step" in h and not any(k.startswith("eval_") for k in h)]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def diagnose(
    history: Sequence[dict[str, Any]],
    max_steps: int,
    warmup_fraction: float = 0.3,
    stuck_tolerance: float = 0.005,
) -> dict[str, bool]:
    """Which `MESSAGES` checks fire on this log history (train entries with `loss` and TRL's `rewards/*`)."""
    logs = _train_logs(history)
    checks = dict.fromkeys(MESSAGES, False)
    if not logs:
        return checks
    # transformers logs the running mean in place of a non-finite loss (logging_nan_inf_filter, on by default
    # so that one overflowed fp16 step does not poison every later logged loss): a NaN model logs a loss of
    # 0.0. TRL's rewards are logged unfiltered.
    checks["nan_loss"] = any(key in h and not _finite(h[key]) for h in logs for key in NAN_WITNESSES)
    start = warmup_fraction * max_steps if max_steps > 0 else 0
    after = [h for h in logs if h["step"] > start]
    if len(after) >= 2:
        losses = [h["loss"] for h in after if _finite(h["loss"])]
        checks["loss_stuck_at_ln2"] = bool(losses) and all(abs(v - LN2) < stuck_tolerance for v in losses)
        accs = [h["rewards/accuracies"] for h in after if _finite(h.get("rewards/accuracies"))]
        checks["reward_accuracy_at_chance"] = bool(accs) and sum(accs) / len(accs) <= 0.5
        chosen = [h["rewards/chosen"] for h in after if _finite(h.get("rewards/chosen"))]
        rejected = [h["rewards/rejected"] for h in after if _finite(h.get("rewards/rejected"))]
        if len(chosen) >= 2 and len(rejected) >= 2:
            half_c, half_r = len(chosen) // 2, len(rejected) // 2
            mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
            checks["rewards_both_falling"] = (
                mean(chosen[half_c:]) < mean(chosen[:half_c])
                and mean(chosen[half_c:]) < 0
                and mean(rejected[half_r:]) < mean(rejected[:half_r])
            )
    return checks


def warnings_for(checks: dict[str, bool]) -> list[str]:
    return [MESSAGES[name] for name, fired in checks.items() if fired]
