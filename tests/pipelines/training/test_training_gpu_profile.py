"""The `gpu` profile's training path on CPU (issue 8): same rewards as the plain path, and an end-to-end run.

Real TRL on the tiny model. The optimisations must not change the maths: with the reference log-probs
precomputed once (and the per-bias_type val sets registered up front to get theirs), the losses, rewards and
per-category metrics equal those of the path that runs the reference model every step.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_pipeline, training_parameters, write_jsonl
from training_fixtures import SHORT_RUN, free_port, sample_rows, write_splits

from edu_bias_pipeline.training.config import resolve_training_config
from edu_bias_pipeline.training.contract import RuntimeSpec
from edu_bias_pipeline.training.data import completion_lengths
from edu_bias_pipeline.training.entry import run

REWARD_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


@pytest.fixture(scope="module")
def tiny_run_inputs(tmp_path_factory) -> Path:
    from edu_bias_pipeline.training.tiny_model import build_tiny_model

    rows = sample_rows()
    random.Random(0).shuffle(rows)
    root = tmp_path_factory.mktemp("gpu_profile")
    write_jsonl(root / "val.jsonl", rows[:40])
    write_jsonl(root / "train.jsonl", rows[40:160])
    build_tiny_model([r["chosen"] for r in rows] + [r["rejected"] for r in rows], root / "model")
    return root


def gpu_params(params: dict) -> dict:
    """`--env gpu --params training.<params>`: conf/gpu's training block with these keys merged in."""
    return training_parameters("gpu", {"training": params})


def _run_in_process(
    root: Path, name: str, precision: str = "fp32", callbacks=(), env: str | None = "gpu", **overrides
) -> dict:
    params = {
        "output_dir": str(root / name),
        "max_steps": 6,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 3,  # per-category eval during training, after the policy has moved
        "save_strategy": "no",
        "learning_rate": 2e-3,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "train_sampling_strategy": "random",
        "dataloader_num_workers": 0,
        "reference_cache_dir": str(root / name / "reference_cache"),
        **overrides,
    }
    config = resolve_training_config(gpu_params(params) if env == "gpu" else params, {})
    runtime = RuntimeSpec(
        model_path=str(root / "model"),
        base_model_id=str(root / "model"),
        train_file=str(root / "train.jsonl"),
        val_file=str(root / "val.jsonl"),
        run_dir=str(root / name / ".run"),
        precision=precision,
        use_cpu=True,
    )
    root_logger = logging.getLogger()
    before = list(root_logger.handlers)
    try:
        return run(config, runtime, extra_callbacks=tuple(callbacks))
    finally:
        for handler in root_logger.handlers[len(before) :]:
            root_logger.removeHandler(handler)
            handler.close()


def _close(a: dict, b: dict, keys=REWARD_KEYS, tol: float = 1e-4) -> None:
    for key in keys:
        assert a[key] == pytest.approx(b[key], abs=tol), key


def test_precomputed_reference_log_probs_give_the_same_rewards(tiny_run_inputs):
    fast = _run_in_process(tiny_run_inputs, "precomputed", precompute_ref_log_probs=True)
    plain = _run_in_process(tiny_run_inputs, "plain", precompute_ref_log_probs=False)
    # the reference's hash goes into the model's contract, for evaluation's cache of its own reference passes
    contracts = [
        json.loads((tiny_run_inputs / name / "final/edu_bias_training.json").read_text(encoding="utf-8"))
        for name in ("precomputed", "plain")
    ]
    assert len(contracts[0]["reference_sha256"]) == 64 and contracts[1]["reference_sha256"] is None

    # the policy moved: rewards are not trivially zero
    assert abs(plain["eval"]["rewards/margins"]) > 0.01
    _close(fast["eval"], plain["eval"])
    _close(fast["train"], plain["train"])  # whole-train-set eval after training, from the cached reference
    assert fast["per_category"].keys() == plain["per_category"].keys() and len(plain["per_category"]) > 1
    for category, metrics in plain["per_category"].items():
        _close(fast["per_category"][category], metrics)
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
    first = _run_in_process(tiny_run_inputs, "cached", precompute_ref_log_probs=True, eval_strategy="no")
    cache = tiny_run_inputs / "cached/.run/datasets"
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("cache-*.arrow")}
    ref_files = [p for p in files if "ref_chosen_logps" in p.read_bytes()[:4096].decode("latin-1")]
    assert ref_files and {p.parent.name for p in ref_files} >= {"train", "val"}
    second = _run_in_process(tiny_run_inputs, "cached", precompute_ref_log_probs=True, eval_strategy="no")
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("cache-*.arrow")} == files
    _close(first["eval"], second["eval"], tol=1e-6)


def _torchrun_entry(inputs: Path, tmp_path: Path, nproc: int, params: dict, **runtime) -> tuple:
    """`python -m torch.distributed.run … -m edu_bias_pipeline.training.entry RUN.json` on CPU, as the node
    would launch it; returns the finished process and the run's output dir."""
    out = Path(params["output_dir"])
    spec = {
        "config": resolve_training_config(params, {}).model_dump(mode="json"),
        "runtime": {
            "model_path": str(inputs / "model"),
            "base_model_id": str(inputs / "model"),
            "train_file": str(inputs / "train.jsonl"),
            "val_file": str(inputs / "val.jsonl"),
            "run_dir": str(out / ".run"),
            "precision": "fp32",
            "use_cpu": True,
            **runtime,
        },
    }
    spec_file = tmp_path / "run.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
        + ["--master_port", free_port(), "-m", "edu_bias_pipeline.training.entry", str(spec_file)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


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
    proc, out = _torchrun_entry(tiny_run_inputs, tmp_path, 2, gpu_params(params))
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
    gathered_proc, gathered_out = _torchrun_entry(tiny_run_inputs, tmp_path, 2, gathered_params)
    assert kept_local not in gathered_proc.stderr
    gathered = json.loads((gathered_out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    # evaluation gathers as TRL does either way; its log carries the running token count of both ranks too
    assert metrics["eval"]["num_tokens"] == gathered["eval"]["num_tokens"] > 0
    _close(metrics["eval"], gathered["eval"], tol=1e-6)
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


def test_completion_lengths_feed_the_length_grouped_sampler():
    from datasets import Dataset

    ds = Dataset.from_dict(
        {"prompt_ids": [[1, 2], [1]], "chosen_ids": [[3], [4, 5, 6]], "rejected_ids": [[7, 8, 9], [1]]}
    )
    assert completion_lengths(ds) == [5, 4]
    assert completion_lengths(ds.select([1])) == [4]


@pytest.mark.parametrize("world, accum", [(2, 1), (2, 2), (3, 1)])
def test_length_groups_hold_whole_steps_of_all_ranks(world, accum):
    """Every rank's batches of one optimizer step come from one length group, in its descending order.

    The sampler is the trainer's own choice for these arguments; the ranks' batches are dealt by accelerate's
    BatchSamplerShard, as the Trainer's dataloader does. Grouped by one rank's share (the former size), each
    of these cases had groups ending inside a step.
    """
    from types import SimpleNamespace

    from accelerate.data_loader import BatchSamplerShard
    from datasets import Dataset
    from torch.utils.data import BatchSampler

    from edu_bias_pipeline.training.trainer import EduBiasDPOTrainer

    rng = random.Random(0)
    lengths = [rng.randint(20, 300) for _ in range(84)]
    batch, eval_batch = 3, 2
    # only these arguments are read to choose a sampler: no model is needed
    trainer = object.__new__(EduBiasDPOTrainer)
    trainer.args = SimpleNamespace(
        train_sampling_strategy="group_by_length",
        train_batch_size=batch,
        gradient_accumulation_steps=accum,
        eval_batch_size=eval_batch,
        world_size=world,
        seed=0,
    )
    trainer.train_dataset = Dataset.from_dict(
        {
            "prompt_ids": [[1] * (n - 1) for n in lengths],
            "chosen_ids": [[2]] * len(lengths),
            "rejected_ids": [[3]] * len(lengths),
        }
    )
    order = list(trainer._get_train_sampler())
    assert sorted(order) == list(range(len(lengths)))
    shards = [
        list(BatchSamplerShard(BatchSampler(order, batch, drop_last=False), world, rank))
        for rank in range(world)
    ]
    per_step = batch * accum * world
    steps = len(order) // per_step
    assert steps >= 4
    for step in range(steps):
        dealt = {i for shard in shards for b in shard[step * accum : (step + 1) * accum] for i in b}
        group = order[step * per_step : (step + 1) * per_step]
        assert dealt == set(group)
        # a group's first pair may be the one LengthGroupedSampler swapped for the longest of all
        tail = [lengths[i] for i in group[1:]]
        assert tail == sorted(tail, reverse=True), f"step {step} spans two length groups"
    # evaluation batches are dealt the same way: its groups are one evaluation step of all ranks
    assert trainer._get_eval_sampler(trainer.train_dataset).batch_size == eval_batch * world


def test_gpu_profile_trains_end_to_end_on_cpu(project, capfd):
    """`kedro run --env gpu` without CUDA: fp32 (logged), precomputed reference, length-grouped batches."""
    write_splits(project, limit=60)
    # conf/base's tiny-model rate and eval batch, which conf/gpu's block replaces, so the tiny model moves
    tiny = {"learning_rate": 2e-3, "per_device_eval_batch_size": 16, "max_length": 256}
    run_pipeline(project, "training", env="gpu", params={"training": {**SHORT_RUN, **tiny}})

    # the Kedro log (its handlers write to the console); rich wraps the lines and puts `nodes.py:NNN` in them
    shown = " ".join(re.sub(r"\S+\.py:\d+", " ", "".join(capfd.readouterr())).split())
    assert (
        "GPU settings (probe_batch_size, sdpa_backends, liger_kernels) without a CUDA device: "
        "training in fp32 on CPU" in shown
    )
    out = project / "data/06_models/dpo_model"
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "precompute_ref_log_probs=True, sampling=group_by_length, attention=sdpa" in log
    assert "precision=fp32" in log
    assert (out / "final/model.safetensors").exists() and (out / "checkpoint-4").is_dir()
    m = json.loads((project / "data/08_reporting/training_metrics.json").read_text(encoding="utf-8"))
    assert m["run"]["global_step"] == 4 and m["run"]["precision"] == "fp32"
    assert m["per_category"] and all("rewards/accuracies" in v for v in m["per_category"].values())
    assert any(k.startswith("eval/") and k.count("/") >= 2 for s in m["steps"] for k in s)  # per-category


def _deepspeed_in_one_cpu_process(
    inputs: Path, tmp_path: Path, stage: int, precision: str, nproc: int = 1, **params
) -> tuple:
    """One step of the gpu profile under DeepSpeed ZeRO-`stage`: one process (or `nproc`), DeepSpeed's CPU
    accelerator."""
    from edu_bias_pipeline.training.launch import deepspeed_config

    params = {
        "mode": "deepspeed",
        "output_dir": str(tmp_path / f"zero{stage}"),
        "max_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "no",
        "per_device_train_batch_size": 8,
        "train_sampling_strategy": "random",
        "dataloader_num_workers": 0,
        "reference_cache_dir": str(tmp_path / "reference_cache"),
        "deepspeed": {"zero_stage": stage},
        **params,
    }
    params = gpu_params(params)
    ds_file = tmp_path / f"zero{stage}.json"
    ds_file.write_text(
        json.dumps(deepspeed_config(resolve_training_config(params, {}), precision)), encoding="utf-8"
    )
    return _torchrun_entry(
        inputs,
        tmp_path,
        nproc,
        params,
        val_file=str(tmp_path / "no_val.jsonl"),
        precision=precision,
        deepspeed_config=str(ds_file),
    )


@pytest.mark.slow
def test_deepspeed_keeps_cached_reference_log_probs_in_float32(tiny_run_inputs, tmp_path):
    """ZeRO-2 in bf16 with precomputed reference log-probs (one CPU process): the policy starts equal to the
    reference, so the first loss is ln 2. transformers casts floating inputs to DeepSpeed's dtype; cached
    reference log-probs cast to bf16 (sums of ~700 nats in steps of 4) made it 0.684 here, 1.115 on H100."""

    # bf16: what a GPU gets; the node would pick fp32 on this CPU
    proc, out = _deepspeed_in_one_cpu_process(tiny_run_inputs, tmp_path, 2, "bf16", logging_steps=1)
    assert "ZeRO stage 2" in proc.stderr
    metrics = json.loads((out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    first = next(h for h in metrics["history"] if h.get("step") == 1 and "loss" in h)
    assert first["loss"] == pytest.approx(0.6931, abs=2e-3)
    assert abs(first["rewards/chosen"]) < 0.01 and abs(first["rewards/rejected"]) < 0.01


def _two_zero2_ranks(tiny_run_inputs, run_dir: Path, **extra):
    """Three ZeRO-2 steps on two CPU ranks (gpu profile, fp32): the launcher's output, the logged (loss,
    grad_norm) of each step and the trained weights."""
    from safetensors.torch import load_file

    run_dir.mkdir()
    proc, out = _deepspeed_in_one_cpu_process(
        tiny_run_inputs,
        run_dir,
        2,
        "fp32",
        nproc=2,
        max_steps=3,
        logging_steps=1,
        per_device_train_batch_size=4,
        **extra,
    )
    assert "training process 1/2" in proc.stderr
    metrics = json.loads((out / "edu_bias_metrics.json").read_text(encoding="utf-8"))
    logged = [(h["loss"], h["grad_norm"]) for h in metrics["history"] if "loss" in h]
    return proc, logged, load_file(str(out / "final/model.safetensors"))


def _assert_trained_alike(tiny_run_inputs, first, second) -> None:
    """The same logged losses and gradient norms, and the same trained weights, after weights moved."""
    from safetensors.torch import load_file

    (logged_1, weights_1), (logged_2, weights_2) = first, second
    assert len(logged_1) == 3 and all(isinstance(norm, float) and norm > 0 for _, norm in logged_1)
    for (loss_1, norm_1), (loss_2, norm_2) in zip(logged_1, logged_2, strict=True):
        assert loss_1 == pytest.approx(loss_2, rel=1e-6)
        assert norm_1 == pytest.approx(norm_2, rel=1e-5)
    initial = load_file(str(tiny_run_inputs / "model/model.safetensors"))
    assert [name for name in initial if not initial[name].equal(weights_1[name])]  # the weights trained
    for name, tensor in weights_1.items():
        assert (tensor - weights_2[name]).abs().max().item() <= 1e-6, name


@pytest.mark.slow
def test_zero2_without_the_contiguous_gradient_buffer_trains_the_same(tiny_run_inputs, tmp_path):
    """The gpu profile turns DeepSpeed's `contiguous_gradients` off under ZeRO-2 (each gradient hook then
    only files the gradient; the bucket is flattened once when reduced). Two ZeRO-2 ranks on CPU, three steps,
    with it off and on: the same logged losses and gradient norms (a sum where the mean belongs would double
    them) and the same trained weights, so the gradients were reduced alike."""
    runs = {}
    for contiguous in (False, True):
        run_dir = tmp_path / f"contiguous_{contiguous}"
        # off: the profile's `auto`; on: asked for
        extra = {"deepspeed": {"zero_stage": 2, "contiguous_gradients": True}} if contiguous else {}
        _, *runs[contiguous] = _two_zero2_ranks(tiny_run_inputs, run_dir, **extra)
        config = json.loads((run_dir / "zero2.json").read_text(encoding="utf-8"))
        assert config["zero_optimization"]["contiguous_gradients"] is contiguous
    _assert_trained_alike(tiny_run_inputs, runs[False], runs[True])


@pytest.mark.slow
def test_zero2_with_the_foreach_grad_norm_trains_the_same(tiny_run_inputs, tmp_path):
    """The gpu profile's `deepspeed.foreach_grad_norm` replaces ZeRO-2's gradient norm (which clips the
    gradients and is logged as grad_norm) with multi-tensor kernels. Two ZeRO-2 ranks on CPU, three steps,
    with it off and on: the same logged losses and gradient norms (a rank's own partition alone, without the
    all_reduce, gives a norm 19% smaller and clips otherwise) and the same trained weights. Both take the
    norm in float64: a float32 sum came to 3.5e-5 off on the 142k-element embedding partition here."""
    installed = "ZeRO gradient norm: multi-tensor kernels (deepspeed.foreach_grad_norm)"
    runs = {}
    for foreach in (False, True):
        run_dir = tmp_path / f"foreach_{foreach}"
        # on: the profile's default; off: asked for
        extra = {} if foreach else {"deepspeed": {"zero_stage": 2, "foreach_grad_norm": False}}
        proc, *runs[foreach] = _two_zero2_ranks(tiny_run_inputs, run_dir, **extra)
        spec = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        assert spec["config"]["deepspeed"]["foreach_grad_norm"] is foreach
        # both ranks took the multi-tensor norm, or neither did
        assert proc.stderr.count(installed) == (2 if foreach else 0)
    _assert_trained_alike(tiny_run_inputs, runs[True], runs[False])


@pytest.mark.slow
def test_zero3_records_no_reference_hash_and_caches_nothing(tiny_run_inputs, tmp_path):
    """ZeRO-3 partitions the model as it loads, so TRL's weight hash covers empty tensors: two base models of
    one architecture would share it. No cache entry is keyed by it, and the contract records none."""

    proc, out = _deepspeed_in_one_cpu_process(tiny_run_inputs, tmp_path, 3, "fp32")
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
    first = _run_in_process(tiny_run_inputs, "first", reference_cache_dir=str(cache))
    entries = _entries(cache)
    assert len(entries) == 2 + len(first["per_category"])  # train, val, one per bias_type
    assert _trl_reference_files(tiny_run_inputs / "first/.run")  # computed by TRL in the first run

    second = _run_in_process(tiny_run_inputs, "second", reference_cache_dir=str(cache))
    assert _entries(cache) == entries
    assert not _trl_reference_files(tiny_run_inputs / "second/.run")  # nothing computed
    _close(first["eval"], second["eval"], tol=1e-6)
    _close(first["train"], second["train"], tol=1e-6)
    losses = [[h["loss"] for h in m["history"] if "loss" in h] for m in (first, second)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)

    other = tmp_path / "other_data"
    other.mkdir()
    lines = (tiny_run_inputs / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (other / "train.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    for name in ("val.jsonl", "model"):
        (other / name).symlink_to(tiny_run_inputs / name)
    _run_in_process(other, "third", reference_cache_dir=str(cache))
    after = _entries(cache)
    assert {k: after[k] for k in entries} == entries and len(after) == len(entries) + 1  # a new train entry


def _lora_bf16_model(root: Path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(root / "model", dtype=torch.bfloat16)
    # random B, so the adapters change the output; PEFT keeps their weights in float32 over the bf16 base
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def test_adapter_inputs_skip_the_float32_round_trip_with_identical_results(tiny_run_inputs):
    """Under autocast the adapter matmuls run in bf16 either way: PEFT's cast of each input to float32 (and
    autocast's cast straight back) changes no value, so without it logits and adapter gradients are equal."""
    import torch

    from edu_bias_pipeline.training.model import skip_adapter_input_casts

    ids = torch.randint(0, 200, (2, 12), generator=torch.Generator().manual_seed(0))

    def forward_backward(model):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids).logits
        logits.float().logsumexp(-1).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return logits.detach(), grads

    model = _lora_bf16_model(tiny_run_inputs)
    with_casts = forward_backward(model)
    assert skip_adapter_input_casts(model) > 0
    without = forward_backward(model)
    assert torch.equal(with_casts[0], without[0])
    assert with_casts[1].keys() == without[1].keys() and len(without[1]) > 0
    for name, grad in with_casts[1].items():
        assert grad.dtype == torch.float32 and torch.equal(grad, without[1][name]), name


def test_lora_in_bf16_trains_with_adapter_input_casts_off(tiny_run_inputs):
    """The stage's LoRA run in bf16 (CPU autocast here, CUDA on a GPU): the adapted layers take their inputs
    as they are throughout training, and the run starts where DPO must (loss ln 2) and learns."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import TrainerCallback

    casting = []

    class Watch(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
            casting.append((len(layers), sum(m.cast_input_dtype_enabled for m in layers)))

    m = _run_in_process(
        tiny_run_inputs,
        "lora_bf16",
        precision="bf16",
        callbacks=[Watch()],
        lora={"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
        eval_strategy="no",
    )
    assert casting and all(n > 0 and enabled == 0 for n, enabled in casting)
    losses = [h["loss"] for h in m["history"] if "loss" in h and "eval_loss" not in h]
    assert losses[0] == pytest.approx(0.6931, abs=2e-3)
    assert m["train"]["rewards/accuracies"] > 0.5


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

    m = _run_in_process(root, "nan", env=None, max_steps=2, eval_strategy="no", logging_steps=1)
    logs = [h for h in m["history"] if "loss" in h and "eval_loss" not in h]
    assert logs and all(math.isnan(h["rewards/chosen"]) for h in logs)
    assert m["health"]["checks"]["nan_loss"]
