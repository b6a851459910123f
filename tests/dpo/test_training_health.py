"""Training-health checks on synthetic TRL log histories."""

from __future__ import annotations

import math

from edu_bias_pipeline.dpo.health import LN2, diagnose, warnings_for


def log(step, loss, acc=0.5, chosen=0.0, rejected=0.0):
    return {
        "step": step,
        "loss": loss,
        "rewards/accuracies": acc,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
    }


def test_healthy_run_raises_nothing():
    history = [
        log(s, 0.69 - 0.05 * s, acc=0.5 + 0.05 * s, chosen=0.1 * s, rejected=-0.2 * s) for s in range(1, 11)
    ]
    history.append({"step": 10, "eval_loss": 0.3})  # eval entries are ignored
    checks = diagnose(history, max_steps=10)
    assert not any(checks.values()) and warnings_for(checks) == []


def test_stuck_loss_and_chance_accuracy():
    history = [log(s, LN2 + 0.001, acc=0.5) for s in range(1, 11)]
    checks = diagnose(history, max_steps=10)
    assert checks["loss_stuck_at_ln2"] and checks["reward_accuracy_at_chance"]
    assert any("0.693" in w for w in warnings_for(checks))


def test_warmup_is_ignored():
    history = [log(s, LN2, acc=0.0) for s in range(1, 4)] + [log(s, 0.3, acc=0.9) for s in range(4, 11)]
    assert not any(diagnose(history, max_steps=10, warmup_fraction=0.3).values())


def test_both_rewards_falling_and_nan():
    history = [log(s, 0.5, acc=0.8, chosen=-0.1 * s, rejected=-0.3 * s) for s in range(1, 11)]
    assert diagnose(history, max_steps=10)["rewards_both_falling"]
    history[-1]["loss"] = math.nan
    assert diagnose(history, max_steps=10)["nan_loss"]


def test_nan_rewards_under_a_masked_loss_count_as_nan():
    # transformers' logging_nan_inf_filter logs the running mean (0.0 from the start) for a NaN loss
    history = [log(s, 0.0, acc=0.0, chosen=math.nan, rejected=math.nan) for s in range(1, 4)]
    assert diagnose(history, max_steps=10)["nan_loss"]
