# Provenance: the bare-TRL anchor from the project's shared reference files (`bench/trl_anchor.py`,
# sha256 dd6e2b599540e472…), copied so that the anchor ratios of docs/performance.md can be reproduced from a
# clone. Changed: the project's ruff settings (imports split and sorted, the unused `math` import dropped,
# lines wrapped, one comment moved above its line), and the architecture table, vocabulary size and peak
# FLOP/s taken from edu_bias_pipeline.dpo.architectures, which holds the same values; every other
# statement is the original's.
"""Anchor benchmark: bare TRL DPOTrainer throughput on one GPU, random-init Qwen2 architectures.

Measures pairs/s, tokens/s, MFU and peak memory of plain TRL (what a user would run instead of
the project), so the project's own training stage can be compared against it on the same card.
It trains with no project code (only the architecture shapes are shared): a word-level tokenizer over
Qwen2's 151,936-token vocabulary, synthetic token data (prompt ≈ 48, completion ≈ 96 tokens by default),
`DPOConfig` at beta 0.5 and lr 5e-6.

    python benchmarks/trl_anchor.py --arch 0.5b|1.5b|7b --batch B --accum A --steps N --warm W \\
        [--lora] [--precompute] [--gc] [--prompt P --completion C] [--tag NAME] \\
        [--deepspeed benchmarks/zero2.json]

Prints one `RESULT {json}` line (pairs/s and tokens/s after the W warm-up steps, MFU against 989 TFLOP/s dense
bf16, peak GPU memory) and appends it to `$OUT/anchor.jsonl`. Several GPUs: launch it with
`python -m torch.distributed.run --nproc_per_node N`. `benchmarks/run_gpu_bench.sh` and
`run_gpu_bench_2gpu.sh` run it back to back with the training stage; compare figures only within one call on
one machine (the same configuration differs up to 2x between machines).
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config, TrainerCallback
from trl import DPOConfig, DPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from edu_bias_pipeline.dpo.architectures import (  # noqa: E402
    PEAK_BF16_FLOPS,
    QWEN2_ARCHITECTURES,
    QWEN2_VOCAB_SIZE,
)

# The published Qwen2 shapes, vocabulary and bf16 peak, shared with the project's benchmarks so that both
# sides of a comparison build the same model; the training path below is TRL's alone.
ARCH = QWEN2_ARCHITECTURES
VOCAB = QWEN2_VOCAB_SIZE


def tokenizer():
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    vocab.update({f"t{i}": i + 3 for i in range(VOCAB - 3)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def data(n, p, c, seed=0):
    rng = random.Random(seed)

    def txt(m):
        k = max(4, int(rng.gauss(m, m / 4)))
        return " ".join(f"t{rng.randrange(VOCAB - 3)}" for _ in range(k))

    return Dataset.from_list([{"prompt": txt(p), "chosen": txt(c), "rejected": txt(c)} for _ in range(n)])


class Clock(TrainerCallback):
    def __init__(self, warm):
        self.warm, self.t0, self.steps = warm, None, 0

    def on_step_end(self, args, state, control, **kw):
        torch.cuda.synchronize()
        if state.global_step == self.warm:
            self.t0 = time.perf_counter()
        elif state.global_step > self.warm:
            self.steps = state.global_step - self.warm
            self.t1 = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="0.5b")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--lora", action="store_true")
    ap.add_argument("--precompute", action="store_true")
    ap.add_argument("--gc", action="store_true")
    ap.add_argument("--prompt", type=int, default=48)
    ap.add_argument("--completion", type=int, default=96)
    ap.add_argument("--tag", default="")
    ap.add_argument("--deepspeed", default=None, help="DeepSpeed JSON config (launch with torchrun)")
    a = ap.parse_args()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.cuda.set_device(local_rank)  # one GPU per process under accelerate/deepspeed launchers
    world = int(os.environ.get("WORLD_SIZE", 1))
    torch.manual_seed(0)
    # ranks build their own in-memory copy; a shared map cache breaks under torchrun
    datasets.disable_caching()
    tok = tokenizer()
    cfg = Qwen2Config(vocab_size=VOCAB, max_position_embeddings=4096, **ARCH[a.arch])
    with torch.device(f"cuda:{local_rank}"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    nparams = sum(p.numel() for p in model.parameters())
    kw = {}
    if a.lora:
        from peft import LoraConfig

        kw["peft_config"] = LoraConfig(
            r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        ref = None
    else:
        with torch.device(f"cuda:{local_rank}"):
            ref = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
        ref.load_state_dict(model.state_dict())
    n = (a.steps + a.warm) * a.batch * a.accum * world
    ds = data(n, a.prompt, a.completion)
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=a.accum,
        max_steps=a.steps + a.warm,
        learning_rate=5e-6,
        beta=0.5,
        bf16=True,
        logging_steps=5,
        report_to=[],
        save_strategy="no",
        precompute_ref_log_probs=a.precompute,
        gradient_checkpointing=a.gc,
        max_length=1024,
        dataloader_num_workers=2,
        disable_tqdm=True,
        deepspeed=a.deepspeed,
    )
    clock = Clock(a.warm)
    tr = DPOTrainer(
        model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok, callbacks=[clock], **kw
    )
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    tr.train()
    total = time.perf_counter() - t
    dt = clock.t1 - clock.t0
    pairs = clock.steps * a.batch * a.accum * world
    toks = pairs * (a.prompt + a.completion) * 2  # prompt repeated for chosen and rejected
    bwd = 4 if a.lora else 6
    flops = toks * nparams * (bwd + (0 if a.precompute else 2))
    peak = PEAK_BF16_FLOPS  # H100 SXM dense bf16
    if local_rank != 0:
        return
    out = dict(
        tag=a.tag,
        gpus=world,
        arch=a.arch,
        params_b=round(nparams / 1e9, 3),
        batch=a.batch,
        accum=a.accum,
        lora=a.lora,
        precompute=a.precompute,
        deepspeed=bool(a.deepspeed),
        gc=a.gc,
        pairs_per_s=round(pairs / dt, 2),
        tokens_per_s=round(toks / dt),
        mfu=round(flops / dt / peak / world, 4),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1),
        total_s=round(total, 1),
        gpu=torch.cuda.get_device_name(),
    )
    print("RESULT", json.dumps(out), flush=True)
    with open(os.path.join(os.environ.get("OUT", "."), "anchor.jsonl"), "a") as f:
        f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
