"""Reference log-probs computed once instead of every step (the `gpu` environment's training path, real TRL
on the tiny model on CPU): the same losses, rewards and per-category metrics as the path that runs the
reference model every step; cached beside the run and across runs; shared by two ranks; kept in float32
under DeepSpeed; never keyed by ZeRO-3's empty weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_runs import (
    assert_close,
    deepspeed_run,
    gpu_params,
    run_in_process,
    tiny_run_inputs_fixture,  # noqa: F401 (registers the `tiny_run_inputs` fixture)
    torchrun_entry,
)


def test_precomputed_reference_log_probs_give_the_same_rewards(tiny_run_inputs):
    fast = run_in_process(tiny_run_inputs, "precomputed", precompute_ref_log_probs=True)
    plain = run_in_process(tiny_run_inputs, "plain", precompute_ref_log_probs=False)
    # the reference's hash goes into the model's contract, for evaluation's cache of its own reference passes
    contracts = [
        json.loads((tiny_run_inputs / name / "final/edu_bias_training.json").read_text(encoding="utf-8"))
        for name in ("precomputed", "plain")
    ]
    assert len(contracts[0]["reference_sha256"]) == 64 and contracts[1]["reference_sha256"] is None

    # the policy moved: rewards are not trivially zero
    assert abs(plain["eval"]["rewards/margins"]) > 0.01
    assert_close(fast["eval"], plain["eval"])
    # whole-train-set eval after training, from the cached reference
    assert_close(fast["train"], plain["train"])
    assert fast["per_category"].keys() == plain["per_category"].keys() and len(plain["per_category"]) > 1
    for category, metrics in plain["per_category"].items():
        assert_close(fast["per_category"][category], metrics)
    # same loss curve, and the per-category evaluation during training ran in both
    losses = [[h["loss"] for h in m["history"] if "loss" in h] for m in (fast, plain)]
    assert len(losses[0]) == len(losses[1]) == 6  # steps 1-6
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    for m in (fast, plain):
        categories = {f"eval_{c}/rewards/margins" for c in plain["per_category"]}
        assert categories <= {k for h in m["history"] if h["step"] == 3 for k in h}


def test_reference_log_probs_are_cached_beside_the_run_and_reused(tiny_run_inputs):
    """File-backed datasets: TRL's reference cache lands in the run directory (shared by all ranks) and an
    identical rerun (a resume, the benchmark) computes nothing again."""
    first = run_in_process(tiny_run_inputs, "cached", precompute_ref_log_probs=True, eval_strategy="no")
    cache = tiny_run_inputs / "cached/.run/datasets"
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("cache-*.arrow")}
    ref_files = [p for p in files if "ref_chosen_logps" in p.read_bytes()[:4096].decode("latin-1")]
    assert ref_files and {p.parent.name for p in ref_files} >= {"train", "val"}
    second = run_in_process(tiny_run_inputs, "cached", precompute_ref_log_probs=True, eval_strategy="no")
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("cache-*.arrow")} == files
    assert_close(first["eval"], second["eval"], tol=1e-6)


def test_precomputed_reference_works_across_two_processes(tiny_run_inputs, tmp_path):
    """Two ranks (torchrun, gloo on CPU): bare TRL's precompute fails here on an in-memory dataset
    (`FileNotFoundError` on a cache file in another rank's temporary directory); the stage's does not. The
    logged step metrics are the same whether gathered every micro-batch or once per logging step."""
    params = {
        "output_dir": str(tmp_path / "ddp"),
        "max_steps": 2,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "no",
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "dataloader_num_workers": 0,
        "reference_cache_dir": str(tmp_path / "reference_cache"),
    }
    proc, out = torchrun_entry(tiny_run_inputs, tmp_path, 2, gpu_params(params))
    assert "training process 1/2" in proc.stderr and "training process 0/2" in proc.stderr
    assert (out / "final/model.safetensors").exists()
    metrics = json.loads((out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_processes"] == 2 and metrics["per_category"]

    # The gpu profile keeps TRL's step metrics on each rank until a logging step. The log must still be the
    # ranks' figures, as TRL's gathers in every micro-batch give them.
    kept_local = "step metrics: kept on each rank"
    assert kept_local in proc.stderr
    gathered_params = gpu_params(
        {**params, "output_dir": str(tmp_path / "ddp_gathered"), "gather_step_metrics": True}
    )
    gathered_proc, gathered_out = torchrun_entry(tiny_run_inputs, tmp_path, 2, gathered_params)
    assert kept_local not in gathered_proc.stderr
    gathered = json.loads((gathered_out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    # evaluation gathers as TRL does either way; its log carries the running token count of both ranks too
    assert metrics["eval"]["num_tokens"] == gathered["eval"]["num_tokens"] > 0
    assert_close(metrics["eval"], gathered["eval"], tol=1e-6)
    train_logs = [[h for h in m["history"] if "num_tokens" in h] for m in (metrics, gathered)]
    assert [h["step"] for h in train_logs[0]] == [h["step"] for h in train_logs[1]] == [1, 2]
    assert train_logs[0][-1]["rewards/margins"] != 0.0  # the policy moved by then
    for local, gather in zip(*train_logs, strict=True):
        assert local["num_tokens"] == gather["num_tokens"]  # both ranks' tokens, not one rank's
        for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
            assert local[key] == pytest.approx(gather[key], rel=1e-5, abs=1e-7), (local["step"], key)
        for key in ("logps/chosen", "logps/rejected"):
            assert local[key] == pytest.approx(gather[key], rel=1e-5), (local["step"], key)
        # token-weighted over both ranks there, each rank's token-weighted figure averaged here
        for key in ("entropy", "logits/chosen", "logits/rejected", "mean_token_accuracy"):
            assert local[key] == pytest.approx(gather[key], rel=0.05, abs=1e-3), (local["step"], key)


@pytest.mark.slow
def test_deepspeed_keeps_cached_reference_log_probs_in_float32(tiny_run_inputs, tmp_path):
    """ZeRO-2 in bf16 with precomputed reference log-probs (one CPU process): the policy starts equal to the
    reference, so the first loss is ln 2. transformers casts floating inputs to DeepSpeed's dtype; cached
    reference log-probs cast to bf16 (sums of ~700 nats in steps of 4) made it 0.684 here, 1.115 on H100."""

    # bf16: what a GPU gets; the node would pick fp32 on this CPU
    proc, out = deepspeed_run(tiny_run_inputs, tmp_path, 2, "bf16", logging_steps=1)
    assert "ZeRO stage 2" in proc.stderr
    metrics = json.loads((out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    first = next(h for h in metrics["history"] if h.get("step") == 1 and "loss" in h)
    assert first["loss"] == pytest.approx(0.6931, abs=2e-3)
    assert abs(first["rewards/chosen"]) < 0.01 and abs(first["rewards/rejected"]) < 0.01


@pytest.mark.slow
def test_zero3_records_no_reference_hash_and_caches_nothing(tiny_run_inputs, tmp_path):
    """ZeRO-3 partitions the model as it loads, so TRL's weight hash covers empty tensors: two base models of
    one architecture would share it. No cache entry is keyed by it, and the contract records none."""

    proc, out = deepspeed_run(tiny_run_inputs, tmp_path, 3, "fp32")
    assert "ZeRO stage 3" in proc.stderr
    contract = json.loads((out / "final/edu_bias_training.json").read_text(encoding="utf-8"))
    assert "reference_sha256" in contract and contract["reference_sha256"] is None
    assert not list((tmp_path / "reference_cache").glob("ref-*"))


def _entries(cache: Path) -> dict[str, float]:
    return {p.name: (p / "edu_bias_reference.key").stat().st_mtime_ns for p in cache.glob("ref-*")}


def _trl_reference_files(run_dir: Path) -> list[Path]:
    return [
        p
        for p in run_dir.rglob("cache-*.arrow")
        if "ref_chosen_logps" in p.read_bytes()[:4096].decode("latin-1")
    ]


def test_reference_log_probs_are_reused_across_runs_on_the_same_data(tiny_run_inputs, tmp_path):
    """`reference_cache_dir`: a second, fresh run (new output dir) on the same data and reference model finds
    every reference log-prob it needs (train, val, each bias_type) and computes none; results agree. Other
    data gets an entry of its own."""
    cache = tmp_path / "shared_reference_cache"
    first = run_in_process(tiny_run_inputs, "first", reference_cache_dir=str(cache))
    entries = _entries(cache)
    assert len(entries) == 2 + len(first["per_category"])  # train, val, one per bias_type
    assert _trl_reference_files(tiny_run_inputs / "first/.run")  # computed by TRL in the first run

    second = run_in_process(tiny_run_inputs, "second", reference_cache_dir=str(cache))
    assert _entries(cache) == entries
    assert not _trl_reference_files(tiny_run_inputs / "second/.run")  # nothing computed
    assert_close(first["eval"], second["eval"], tol=1e-6)
    assert_close(first["train"], second["train"], tol=1e-6)
    losses = [[h["loss"] for h in m["history"] if "loss" in h] for m in (first, second)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)

    other = tmp_path / "other_data"
    other.mkdir()
    lines = (tiny_run_inputs / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (other / "train.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    for name in ("val.jsonl", "model"):
        (other / name).symlink_to(tiny_run_inputs / name)
    run_in_process(other, "third", reference_cache_dir=str(cache))
    after = _entries(cache)
    assert {k: after[k] for k in entries} == entries and len(after) == len(entries) + 1  # a new train entry
