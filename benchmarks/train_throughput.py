"""Training throughput of the training stage itself: pairs/s, tokens/s, MFU, peak memory, loss curve.

Runs `edu_bias_pipeline.dpo.entry.run` — the function the Kedro node launches, with the same
TrainingConfig resolution (conf/<profile>/'s training block, as `kedro run --env <profile>`, then the flags)
— on a random-init Qwen2 architecture and synthetic token data built exactly like the bare-TRL anchor
(`benchmarks/trl_anchor.py`: word-level tokenizer over the 151,936-token vocabulary, prompt ≈ 48 +
completion ≈ 96 tokens, `random.Random(0)`, model init under `torch.manual_seed(0)`), so the two can be
compared step for step on the same card. The clock is the anchor's: a callback on the trainer, synchronised,
from the end of warm-up step `--warm` to the last step (the reference pre-pass, model load and final
evaluations are outside it, as in the anchor; `setup_s` and `total_s` report them). MFU uses the anchor's
formula: nominal tokens x parameters x (6 full / 4 LoRA, +2 when the reference runs every step) against
989 TFLOP/s dense bf16 (H100 SXM).

    python benchmarks/train_throughput.py --arch 0.5b --profile gpu            # the issue-8 figure
    python benchmarks/train_throughput.py --arch 0.5b --profile gpu --sampling random   # same order as TRL
    python benchmarks/train_throughput.py --arch 7b --lora --profile gpu --batch 32 --gc
    python benchmarks/train_throughput.py --tiny --steps 2 --warm 1           # CPU smoke run

Prints one `RESULT {json}` line (also appended to `$OUT/project.jsonl` when OUT is set).
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edu_bias_pipeline.dpo.architectures import (  # noqa: E402
    PEAK_BF16_FLOPS,
    QWEN2_ARCHITECTURES,
    QWEN2_VOCAB_SIZE,
)
from edu_bias_pipeline.dpo.tiny_model import TinyModelSpec  # noqa: E402

ARCH = QWEN2_ARCHITECTURES  # the anchor's architectures (trl_anchor.py) and the tiny one
VOCAB = QWEN2_VOCAB_SIZE
TINY_VOCAB = TinyModelSpec().vocab_size


def _words(vocab_size: int) -> list[str]:
    """Letter-only words, one token each (Qwen2's pre-tokenizer keeps ` abc` whole)."""
    import string

    letters, length = (string.ascii_letters, 3) if vocab_size >= 150_000 else (string.ascii_lowercase, 2)
    return ["".join(w) for w in itertools.product(letters, repeat=length)]


def build_tokenizer(vocab_size: int):
    """A byte-level BPE whose merges build each word of `_words` into one token, padded to `vocab_size`.

    The anchor keeps its word-level tokenizer in memory; the stage loads the tokenizer from the model
    directory, where transformers 5 always rebuilds a Qwen2 checkpoint's tokenizer as a Qwen2Tokenizer
    (byte-level BPE from vocab + merges). This one tokenises the anchor's texts (one token per word) to
    the same lengths; the prompt gains one newline token (`pairs.render_prompt` without a chat template).
    """
    from tokenizers import pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    merges: list[tuple[str, str]] = []
    words = _words(vocab_size)
    for n in range(1, len(words[0]) + 1):
        for prefix in sorted({w[: n - 1] for w in words}):
            for ch in sorted({w[n - 1] for w in words if w.startswith(prefix)}):
                merges.append(("\u0120" + prefix, ch))
                vocab["\u0120" + prefix + ch] = len(vocab)
    for special in ("<pad>", "<eos>"):
        vocab[special] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<eos>", pad_token="<pad>")


def synthetic_rows(n: int, prompt: int, completion: int, vocab_size: int, seed: int = 0) -> list[dict]:
    """The anchor's data (same generator, same seed, same lengths), as split-contract rows for the stage."""
    rng = random.Random(seed)
    words = _words(vocab_size)

    def txt(m):
        k = max(4, int(rng.gauss(m, m / 4)))
        return "".join(" " + words[rng.randrange(VOCAB - 3) % len(words)] for _ in range(k))

    rows = []
    for i in range(n):
        p, c, r = txt(prompt), txt(completion), txt(completion)  # the anchor's draw order
        rows.append(
            {
                "pair_id": f"bench-{i}",
                "source_line": i + 1,
                "prompt": p,
                "chosen": c,
                "rejected": r,
                "bias_type": ("gender_sexuality", "region")[i % 2],
                "warnings": [],
                "meta": {},
                "split": "train",
                "sample_weight": 1.0,
            }
        )
    return rows


def build_model_dir(shape: dict, vocab_size: int, out: Path, device: str) -> Path:
    """Random-init model (torch.manual_seed(0), as the anchor) + tokenizer saved where the stage loads it."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab_size, max_position_embeddings=4096, **shape)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):  # a 7B init on CPU takes minutes
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok_dir = out.with_name(f"bench-tokenizer-{vocab_size}")  # 20 s to build at full vocabulary: shared
    if not tok_dir.exists():
        build_tokenizer(vocab_size).save_pretrained(str(tok_dir) + ".tmp")
        os.replace(str(tok_dir) + ".tmp", tok_dir)
    shutil.copytree(tok_dir, tmp, dirs_exist_ok=True)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    os.replace(tmp, out)
    return out


def timeline(trace_path: Path, wall_us: float) -> list[str]:
    """GPU busy share from the kernel timeline of a Chrome trace: the union of compute-kernel intervals (NCCL
    kernels apart: they overlap compute and include the time spent waiting for the other ranks), and the idle
    time split by gap length (many short gaps: kernel launches cannot keep up; a few long ones: stalls).
    Summing per-op device times instead double-counts kernels that appear under several ops."""
    events = json.loads(trace_path.read_text(encoding="utf-8"))["traceEvents"]
    kernels = sorted(
        (e["ts"], e["ts"] + e["dur"], "nccl" in e["name"].lower())
        for e in events
        if e.get("ph") == "X" and e.get("cat") == "kernel"
    )
    compute = [(a, b) for a, b, comm in kernels if not comm]
    if not compute:
        return ["no GPU kernels in the trace"]
    busy, gaps = 0.0, []
    start, end = compute[0]
    for a, b in compute[1:]:
        if a > end:
            busy += end - start
            gaps.append(a - end)
            start = a
        end = max(end, b)
    busy += end - start
    edges = (0, 10, 100, 1000, float("inf"))
    idle = [sum(g for g in gaps if lo <= g < hi) / 1e3 for lo, hi in itertools.pairwise(edges)]
    nccl = sum(b - a for a, b, comm in kernels if comm) / 1e3
    return [
        f"GPU compute kernels busy {busy / 1e3:.1f} ms of {wall_us / 1e3:.1f} ms wall = "
        f"{100 * busy / wall_us:.0f}%; NCCL kernels {nccl:.1f} ms (overlapping, waits included)",
        "  idle between compute kernels by gap length <10us / 10-100us / 0.1-1ms / >1ms: "
        + " / ".join(f"{x:.1f}" for x in idle)
        + " ms",
    ]


def profile_report(prof, wall_us: float, warm: int, steps: int, trace_lines: list[str]) -> str:
    """Where the profiled steps' time went: labelled step phases, GPU timeline, top kernels, top CPU ops."""
    import torch

    cuda = torch.cuda.is_available()
    events = prof.key_averages()

    def dev(e, attr):
        return getattr(e, attr.replace("cuda", "device"), None) or getattr(e, attr, 0) or 0

    lines = [f"PROFILE steps {warm + 1}-{warm + steps} (with profiler overhead): wall {wall_us / 1e3:.1f} ms"]
    lines += trace_lines
    for e in events:
        if e.key.startswith("step: "):
            cpu_ms, gpu_ms = e.cpu_time_total / 1e3, dev(e, "cuda_time_total") / 1e3
            lines.append(f"  {e.key:<42} cpu {cpu_ms:9.1f} ms   gpu {gpu_ms:9.1f} ms")
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    lines.append(events.table(sort_by=key, row_limit=30, max_name_column_width=70))
    lines.append("top CPU ops (inclusive):")
    lines.append(events.table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=70))
    return "\n".join(lines)


def make_clock(warm: int, profile_steps: int = 0, profile_out: Path | None = None, rank: int = 0):
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """The anchor's clock, plus the batch size actually used (probe_batch_size may halve it)."""

        def __init__(self):
            self.t0 = self.t1 = self.t_begin = None
            self.steps = 0
            self.batch = self.accum = None
            self.step_ms: list[float] = []  # timed steps, to show spread (stragglers, stalls) beside the mean

        def on_train_begin(self, args, state, control, **kw):
            self.t_begin = time.perf_counter()
            self.prof = None

        def on_step_begin(self, args, state, control, **kw):
            # Every rank profiles: under DDP/ZeRO the slow rank and the waiting rank look different.
            if profile_steps and state.global_step == warm:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
                self.prof = profile(activities=acts)
                self.prof.__enter__()
                self.prof_t0 = time.perf_counter()
            # Labelled ranges split each profiled step into data+forward+backward / optimizer / the rest, so
            # the profile says where the wall time goes, not only which kernels run.
            self._range("step: data wait + forward + backward")

        def on_pre_optimizer_step(self, args, state, control, **kw):
            self._range("step: clip + optimizer")

        def on_optimizer_step(self, args, state, control, **kw):
            self._range("step: scheduler + zero_grad + metrics")

        def _range(self, name):
            if getattr(self, "prof", None) is None:
                return
            from torch.profiler import record_function

            if getattr(self, "open_range", None) is not None:
                self.open_range.__exit__(None, None, None)
            self.open_range = record_function(name)
            self.open_range.__enter__()

        def on_step_end(self, args, state, control, **kw):
            if getattr(self, "open_range", None) is not None:
                self.open_range.__exit__(None, None, None)
                self.open_range = None
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.batch = state.train_batch_size or args.per_device_train_batch_size
            self.accum = args.gradient_accumulation_steps  # the batch-size probe may raise it
            now = time.perf_counter()
            if state.global_step == warm:
                self.t0 = now
            elif state.global_step > warm:
                self.step_ms.append((now - (self.t1 or self.t0)) * 1e3)
                self.steps = state.global_step - warm
                self.t1 = now
            if self.prof is not None and state.global_step == warm + profile_steps:
                wall_us = (time.perf_counter() - self.prof_t0) * 1e6
                self.prof.__exit__(None, None, None)
                base = profile_out or Path(tempfile.gettempdir()) / "profile.txt"
                out = base.with_name(f"{base.stem}_rank{rank}.txt")
                trace = out.with_suffix(".trace.json")
                self.prof.export_chrome_trace(str(trace))
                report = profile_report(self.prof, wall_us, warm, profile_steps, timeline(trace, wall_us))
                if rank == 0:
                    print(report, flush=True)
                if profile_out is not None:  # report and compressed trace come back with $OUT
                    out.write_text(report, encoding="utf-8")
                    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                trace.unlink()
                self.prof = None

    return Clock()


def profile_parameters(name: str) -> dict:
    """The `training:` parameters of `kedro run --env NAME` (conf/NAME/); `default`: the field defaults."""
    if name == "default":
        return {}
    from kedro.config import OmegaConfigLoader

    conf = Path(__file__).resolve().parents[1] / "conf"
    loader = OmegaConfigLoader(str(conf), env=name, base_env="base", default_run_env="local")
    return dict(loader["parameters"]["training"])


def merge_settings(profile: dict, params: dict) -> dict:
    """`params` over `profile`, settings groups (`deepspeed`, `lora`, ...) key by key, as Kedro's --params."""
    merged = dict(profile)
    for key, value in params.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both else value
    return merged


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="0.5b", choices=[a for a in ARCH if a != "tiny"])
    ap.add_argument("--tiny", action="store_true", help="tiny model, 3k vocabulary, CPU smoke run")
    ap.add_argument(
        "--profile",
        default="gpu",
        choices=["gpu", "optimized", "default"],
        help="the training block of conf/<profile>/ (kedro run --env <profile>); default: the field defaults",
    )
    ap.add_argument("--lora", action="store_true", help="LoRA r16 all-linear (the anchor's adapter)")
    ap.add_argument("--batch", type=int, default=None, help="per-device batch (default: the profile's)")
    ap.add_argument("--accum", type=int, default=None, help="gradient accumulation (default: the profile's)")
    ap.add_argument("--steps", type=int, default=25, help="timed optimizer steps after warm-up")
    ap.add_argument("--warm", type=int, default=5, help="warm-up steps outside the clock")
    ap.add_argument("--precompute", choices=["profile", "on", "off"], default="profile")
    ap.add_argument("--sampling", choices=["profile", "random", "group_by_length"], default="profile")
    ap.add_argument("--gc", action="store_true", help="gradient checkpointing")
    ap.add_argument("--compile", action="store_true", help="torch.compile (training.torch_compile)")
    ap.add_argument("--liger", choices=["profile", "auto", "on", "off"], default="profile")
    ap.add_argument("--workers", type=int, default=None, help="dataloader workers (default: the profile's)")
    ap.add_argument("--prompt", type=int, default=48)
    ap.add_argument("--completion", type=int, default=96)
    ap.add_argument(
        "--logging-steps", type=int, default=5, help="loss-curve resolution (the anchor logs every 5)"
    )
    ap.add_argument("--model-cache", default=None, help="where the random-init model is saved (reused)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any further training.KEY (value parsed as JSON), e.g. --set precompute_ref_batch_size=256",
    )
    ap.add_argument(
        "--zero",
        type=int,
        choices=[2, 3],
        default=None,
        help="DeepSpeed ZeRO stage with the stage's generated config (launch with torchrun)",
    )
    ap.add_argument(
        "--torch-profile",
        type=int,
        default=0,
        metavar="N",
        help="torch.profiler over the N steps after warm-up: top kernels printed (and in $OUT)",
    )
    ap.add_argument(
        "--peft-input-casts",
        action="store_true",
        help="ablation: keep PEFT's float32 cast of every LoRA input (the stage turns it off in bf16/fp16)",
    )
    ap.add_argument(
        "--layers",
        type=int,
        default=None,
        help="that many layers instead of the architecture's: with --tiny, a model whose step is nearly all "
        "host work (--layers 24: the 0.5B's 290 parameter tensors, hence its per-parameter hooks, on CPU)",
    )
    ap.add_argument("--tag", default="")
    a = ap.parse_args(argv)

    import torch

    from edu_bias_pipeline.dpo.config import resolve_training_config
    from edu_bias_pipeline.dpo.contract import RuntimeSpec
    from edu_bias_pipeline.dpo.entry import run
    from edu_bias_pipeline.dpo.hardware import detect_hardware, resolve_precision
    from edu_bias_pipeline.dpo.model import resolve_liger
    from edu_bias_pipeline.offline import apply_offline_defaults

    apply_offline_defaults()
    if a.peft_input_casts:
        import edu_bias_pipeline.dpo.model as training_model

        training_model.skip_adapter_input_casts = lambda model, installed=None: 0
    started = time.perf_counter()
    cuda = torch.cuda.is_available()
    # Under torchrun (as the anchor's 2-GPU runs): one GPU per process; rank 0 builds files and prints RESULT.
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if cuda:
        torch.cuda.set_device(local_rank)
    arch = "tiny" if a.tiny else a.arch
    shape = ARCH[arch] | ({"num_hidden_layers": a.layers} if a.layers else {})
    if a.layers:  # its own model cache, and a row never compared with the architecture's
        arch = f"{arch}-{a.layers}l"
    vocab = TINY_VOCAB if a.tiny else VOCAB
    if world > 1:  # every rank must see the same run directory (TRL's shared reference cache)
        work = Path(tempfile.gettempdir()) / f"train_throughput_{os.environ.get('MASTER_PORT', '0')}"
        work.mkdir(exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="train_throughput_"))
    cache = (
        Path(a.model_cache or os.environ.get("BENCH_MODEL_CACHE", tempfile.gettempdir())) / f"bench-{arch}"
    )
    if local_rank == 0:
        model_dir = build_model_dir(shape, vocab, cache, f"cuda:{local_rank}" if cuda else "cpu")
    else:
        model_dir = cache
        while not (cache / "config.json").exists():
            time.sleep(1)
    build_s = time.perf_counter() - started

    params: dict = {
        "model_name_or_path": str(model_dir),
        "output_dir": str(work / "out"),
        "max_length": 1024,  # the anchor's
        "max_steps": a.steps + a.warm,
        "logging_steps": a.logging_steps,
        "eval_strategy": "no",  # the anchor evaluates nothing while training
        "reference_cache_dir": str(work / "reference_cache"),  # each run computes its own (outside the clock)
        "save_strategy": "no",
        "report_to": "none",
        "gradient_checkpointing": a.gc,
        "torch_compile": a.compile,
    }
    if a.batch:
        params["per_device_train_batch_size"] = a.batch
    if a.accum:
        params["gradient_accumulation_steps"] = a.accum
    if a.precompute != "profile":
        params["precompute_ref_log_probs"] = a.precompute == "on"
    if a.sampling != "profile":
        params["train_sampling_strategy"] = a.sampling
    if a.liger != "profile":
        params["liger_kernels"] = {"on": True, "off": False}.get(a.liger, "auto")
    if a.workers is not None:
        params["dataloader_num_workers"] = a.workers
    if a.lora:
        params["lora"] = {
            "enabled": True,
            "r": 16,
            "alpha": 16,
            "dropout": 0.0,
            "target_modules": "all-linear",
        }
    for item in a.set:
        key, _, value = item.partition("=")
        params[key] = json.loads(value)
    config = resolve_training_config(merge_settings(profile_parameters(a.profile), params), {})
    precision, notes = resolve_precision(config, detect_hardware())
    for note in notes:
        print(f"note: {note}", file=sys.stderr)

    batch, accum = config.per_device_train_batch_size, config.gradient_accumulation_steps
    asked_per_gpu_step = batch * accum
    n_train = (a.steps + a.warm) * asked_per_gpu_step
    train_file, val_file = work / "train.jsonl", work / "val.jsonl"
    n_train *= world  # per-device batch on every rank, as the anchor
    rows = synthetic_rows(n_train + 64, a.prompt, a.completion, vocab)
    for path, part in ((train_file, rows[:n_train]), (val_file, rows[n_train:])):
        tmp = path.with_suffix(f".{rank}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in part)
        os.replace(tmp, path)  # ranks write identical files
    ds_file = None
    if a.zero:
        from edu_bias_pipeline.dpo.launch import deepspeed_config

        config.deepspeed.zero_stage = a.zero
        ds_file = work / f"zero{a.zero}.json"
        ds_file.write_text(json.dumps(deepspeed_config(config, precision)), encoding="utf-8")
    runtime = RuntimeSpec(
        model_path=str(model_dir),
        base_model_id=str(model_dir),
        train_file=str(train_file),
        val_file=str(val_file),
        run_dir=str(work / "out" / ".run"),
        precision=precision,
        use_cpu=not cuda,
        deepspeed_config=str(ds_file) if ds_file else None,
    )
    profile_out = Path(os.environ["OUT"]) / f"profile_{a.tag or 'run'}.txt" if os.environ.get("OUT") else None
    clock = make_clock(a.warm, a.torch_profile, profile_out, rank)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_run = time.perf_counter()
    metrics = run(config, runtime, extra_callbacks=(clock,))
    total_s = time.perf_counter() - started

    nparams = sum(_param_count(model_dir))
    dt = (clock.t1 - clock.t0) if clock.steps else float("nan")
    accum = getattr(clock, "accum", None) or accum
    pairs = clock.steps * (clock.batch or batch) * accum * world
    toks = pairs * (a.prompt + a.completion) * 2  # prompt repeated for chosen and rejected, as the anchor
    precomputed = config.precompute_ref_log_probs
    flops = toks * nparams * ((4 if a.lora else 6) + (0 if precomputed else 2))
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    curve = [
        [h["step"], round(h["loss"], 4)] for h in metrics["history"] if "loss" in h and "eval_loss" not in h
    ]
    out = dict(
        tag=a.tag,
        what="project",
        arch=arch,
        params_b=round(nparams / 1e9, 3),
        profile=a.profile,
        lora=a.lora,
        batch=clock.batch or batch,
        accum=accum,
        # as asked, before the batch-size probe splits it: what a multi-GPU run is compared by
        pairs_per_gpu_step=asked_per_gpu_step,
        precompute=precomputed,
        sampling=config.train_sampling_strategy,
        gc=a.gc,
        compile=a.compile,
        peft_input_casts=a.peft_input_casts if a.lora else None,
        liger=resolve_liger(config, runtime),
        precision=precision,
        gather_step_metrics=config.gather_step_metrics,
        steps=clock.steps,
        pairs_per_s=round(pairs / dt, 2),
        step_ms=_spread(clock.step_ms),
        # profiled steps and the trace export fall inside the clock: such a row is not a throughput
        torch_profile=a.torch_profile,
        tokens_per_s=round(toks / dt),
        mfu=round(flops / dt / PEAK_BF16_FLOPS / world, 4),
        gpus=world,
        zero=a.zero,
        peak_mem_gib=round(peak, 1),
        setup_s=round((clock.t_begin or t_run) - t_run, 1),
        build_s=round(build_s, 1),
        total_s=round(total_s, 1),
        loss_curve=curve,
        gpu=torch.cuda.get_device_name() if cuda else "cpu",
    )
    if rank != 0:
        return out
    print("RESULT", json.dumps(out), flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "project.jsonl"), "a") as fh:
            fh.write(json.dumps(out) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return out


def _spread(values: list[float]) -> dict:
    """min / median / max of the timed steps (ms)."""
    if not values:
        return {}
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def _param_count(model_dir: Path):
    """Parameter count from the saved safetensors headers (no second model in memory)."""
    from safetensors import safe_open

    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                shape = st.get_slice(key).get_shape()
                n = 1
                for d in shape:
                    n *= d
                yield n


if __name__ == "__main__":
    main()
