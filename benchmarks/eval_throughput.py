"""Evaluation scoring throughput: pairs/s, tokens/s, MFU and peak memory of `scoring.score_encoded_pairs`.

A random-init model of the Qwen2-0.5B architecture (hidden 896, 24 layers, 14 heads, 2 KV heads,
intermediate 4864, vocab 151936), built from Qwen2Config (no hub), scores synthetic pairs exactly as the
evaluation stage does: length-sorted batches, chosen + rejected stacked in one pass, a policy pass and a
reference pass per batch (a second model for a full checkpoint, the adapter disabled with --adapter).

    python benchmarks/eval_throughput.py                      # GPU: the figures the issue asks for
    python benchmarks/eval_throughput.py --tiny               # CPU smoke run, seconds
    python benchmarks/eval_throughput.py --batch-sizes 64 128 256 --adapter
    python benchmarks/eval_throughput.py --reuse-reference    # a second evaluation (cached reference)

Prints one JSON line per batch size (also appended to `$OUT/eval.jsonl` when OUT is set) and a summary table;
asserts nothing (the target is >= 1,000 pairs/s on one H100). MFU is nominal, as in the training anchor:
2 x parameters x every sequence token per forward pass, against 989 TFLOP/s (H100/H200 SXM dense bf16); the
stage computes less than that (one pass over a shared prompt, the vocabulary projection at statement positions
only), so MFU understates the work saved and pairs/s is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edu_bias_pipeline import scoring  # noqa: E402
from edu_bias_pipeline.dpo.architectures import (  # noqa: E402
    PEAK_BF16_FLOPS,
    QWEN2_ARCHITECTURES,
    QWEN2_VOCAB_SIZE,
)
from edu_bias_pipeline.dpo.tiny_model import TinyModelSpec  # noqa: E402

QWEN2_0_5B = dict(QWEN2_ARCHITECTURES["0.5b"], vocab_size=QWEN2_VOCAB_SIZE, max_position_embeddings=32768)
_SPEC = TinyModelSpec()
TINY = dict(
    QWEN2_ARCHITECTURES["tiny"],
    vocab_size=_SPEC.vocab_size,
    max_position_embeddings=_SPEC.max_position_embeddings,
)


def build_model(arch: dict, seed: int, device, dtype):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(**arch, attn_implementation="sdpa")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype if dtype.is_floating_point else torch.float32)
    try:
        with torch.device(device):  # initialise directly on the device: a 0.5B init on CPU takes a while
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype).eval()


def synthetic_pairs(n: int, vocab: int, prompt_tokens: int, lo: int, hi: int, seed: int):
    """Shared prompt (as the bias-judgement instruction is) + completions of uniform random length + eos."""
    rng = random.Random(seed)
    eos = vocab - 1
    prompt = [rng.randrange(1, vocab - 1) for _ in range(prompt_tokens)]

    def completion():
        return [rng.randrange(1, vocab - 1) for _ in range(rng.randint(lo, hi))] + [eos]

    chosen, rejected = [], []
    for _ in range(n):
        for side in (chosen, rejected):
            c = completion()
            side.append(scoring.EncodedCompletion(prompt + c, len(prompt), False))
    return chosen, rejected


def peak_memory_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is KiB on Linux: the process's peak resident set, model weights included.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny model and few pairs (CPU smoke run)")
    parser.add_argument("--n-pairs", type=int, default=None, help="default 8192 (--tiny: 256)")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="pairs per forward pass; default 32 64 128 256 (--tiny: 16 64)",
    )
    parser.add_argument("--prompt-tokens", type=int, default=30, help="ChatML prompt + instruction length")
    parser.add_argument("--completion-tokens", type=int, nargs=2, default=(12, 32), metavar=("MIN", "MAX"))
    parser.add_argument(
        "--adapter",
        action="store_true",
        help="LoRA policy, reference = adapter disabled (default: two full models)",
    )
    parser.add_argument(
        "--full-logits",
        action="store_true",
        help="disable the completion-only vocabulary projection (for comparison)",
    )
    parser.add_argument(
        "--reuse-reference",
        action="store_true",
        help="give the scorer the reference log-probs (computed once, untimed), as a second evaluation of a "
        "run finds them in its cache: policy passes only",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=scoring.DTYPES)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per batch size (best kept)")
    args = parser.parse_args(argv)

    import torch

    device = scoring.resolve_device(args.device)
    dtype = scoring.resolve_dtype(args.dtype, device)
    arch = TINY if args.tiny else QWEN2_0_5B
    n_pairs = args.n_pairs or (256 if args.tiny else 8192)
    batch_sizes = args.batch_sizes or ([16, 64] if args.tiny else [32, 64, 128, 256])
    if args.full_logits:
        scoring._HIDDEN_STATE_ARCHS = frozenset()

    t0 = time.perf_counter()
    policy = build_model(arch, 0, device, dtype)
    if args.adapter:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy,
            LoraConfig(
                r=16,
                lora_alpha=32,
                init_lora_weights=False,
                task_type="CAUSAL_LM",
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            ),
        )
        policy.to(device=device, dtype=dtype).eval()
        reference = None
    else:
        reference = build_model(arch, 1, device, dtype)
    build_s = time.perf_counter() - t0
    chosen, rejected = synthetic_pairs(
        n_pairs, arch["vocab_size"], args.prompt_tokens, *args.completion_tokens, seed=0
    )
    seq_tokens = sum(len(e.input_ids) for e in chosen + rejected)
    completion_tokens = sum(e.n_completion for e in chosen + rejected)
    env = {
        "device": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        ),
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "model": "tiny-qwen2" if args.tiny else "qwen2-0.5b-arch (random init)",
        "mode": "lora (adapter disabled = reference)" if args.adapter else "full (policy + reference)",
        "reference": "cached log-probs: policy passes only" if args.reuse_reference else "a pass per batch",
        "projection": "full logits" if args.full_logits else "completion positions only",
        "n_pairs": n_pairs,
        "prompt_tokens": args.prompt_tokens,
        "completion_tokens": list(args.completion_tokens),
        "build_s": round(build_s, 1),
    }
    print(json.dumps({"env": env}), flush=True)
    n_params = sum(p.numel() for p in policy.parameters())

    reference_logps = None
    if args.reuse_reference:
        first = scoring.score_encoded_pairs(
            (policy, reference),
            chosen,
            rejected,
            pad_id=0,
            batch_size=max(batch_sizes),
            device=device,
            progress=False,
        )
        reference_logps = (first.reference_chosen, first.reference_rejected)
    passes = 1 if args.reuse_reference else 2

    # Warm-up: kernel selection / allocator growth stay out of the timings.
    warm = min(n_pairs, max(batch_sizes))
    scoring.score_encoded_pairs(
        (policy, reference),
        chosen[:warm],
        rejected[:warm],
        pad_id=0,
        batch_size=max(batch_sizes),
        device=device,
        progress=False,
    )
    results = []
    for batch_size in batch_sizes:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        best = float("inf")
        try:
            for _ in range(args.repeats):
                start = time.perf_counter()
                scoring.score_encoded_pairs(
                    (policy, reference),
                    chosen,
                    rejected,
                    pad_id=0,
                    batch_size=batch_size,
                    device=device,
                    progress=False,
                    reference_logps=reference_logps,
                )
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
        except torch.OutOfMemoryError:
            print(json.dumps({"batch_size": batch_size, "error": "out of memory"}), flush=True)
            torch.cuda.empty_cache()
            continue
        row = {
            "batch_size": batch_size,
            "reuse_reference": args.reuse_reference,
            "seconds": round(best, 3),
            "pairs_per_s": round(n_pairs / best, 1),
            # every pass reads the chosen and the rejected sequences: policy + reference, or policy alone
            "tokens_per_s": round(passes * seq_tokens / best, 1),
            "completion_tokens_per_s": round(passes * completion_tokens / best, 1),
            "mfu": round(2 * n_params * passes * seq_tokens / best / PEAK_BF16_FLOPS, 4),
            "peak_memory_mib": round(peak_memory_mib(device), 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        if os.environ.get("OUT"):
            with open(os.path.join(os.environ["OUT"], "eval.jsonl"), "a", encoding="utf-8") as fh:
                fh.write(json.dumps({**env, **row}) + "\n")

    print(f"\n{env['model']} | {env['mode']} | {env['dtype']} on {env['device']} | {n_pairs} pairs")
    print(f"{'batch':>6} {'pairs/s':>10} {'tokens/s':>12} {'MFU':>7} {'peak MiB':>10}")
    for row in results:
        print(
            f"{row['batch_size']:>6} {row['pairs_per_s']:>10.1f} {row['tokens_per_s']:>12.0f} "
            f"{row['mfu'] * 100:>6.1f}% {row['peak_memory_mib']:>10.0f}"
        )


if __name__ == "__main__":
    main()
