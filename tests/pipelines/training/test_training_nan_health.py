"""A model that computes NaN trips the training health check, though transformers logs no NaN loss."""

from __future__ import annotations

from tiny_runs import (
    run_in_process,
    tiny_run_inputs_fixture,  # noqa: F401 (registers the `tiny_run_inputs` fixture)
)


def test_a_model_computing_nan_trips_the_health_check(tiny_run_inputs, tmp_path):
    """transformers logs the running mean in place of a NaN loss (0.0 for a model that computes NaN from the
    start), so the check also reads TRL's unfiltered rewards; on the loss alone it never fired."""
    import math
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path / "nan_inputs"
    shutil.copytree(
        tiny_run_inputs, root, ignore=shutil.ignore_patterns("precomputed", "plain", "cached*", "lora*")
    )
    model = AutoModelForCausalLM.from_pretrained(root / "model")
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(root / "model")

    m = run_in_process(root, "nan", env=None, max_steps=2, eval_strategy="no", logging_steps=1)
    logs = [h for h in m["history"] if "loss" in h and "eval_loss" not in h]
    assert logs and all(math.isnan(h["rewards/chosen"]) for h in logs)
    assert m["health"]["checks"]["nan_loss"]
