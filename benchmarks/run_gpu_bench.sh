#!/usr/bin/env bash
# Issue 8: the bare-TRL anchor and the training stage's own path, back to back on the same GPU, in one call.
#
# Needs the project installed on a CUDA machine (docs/performance.md, "Measuring it again"; or the wheels of
# docs/gpu_proof.md with PYTHONPATH=/tmp/site:$PWD/src). The anchor is benchmarks/trl_anchor.py.
# Prints every run's RESULT line, then a side-by-side summary (pairs/s, MFU, peak memory, speed-up over the best
# anchor figure of this call, loss curves) and the evaluation scoring figures. Results: $OUT/anchor.jsonl,
# $OUT/project.jsonl, $OUT/eval.jsonl, $OUT/bench_logs.tgz.
# Budget: BUDGET_S (480 s) of runs, leaving the rest of a 600 s device call for the wheel install; RUN_7B=0 skips 7B;
# HEADLINE=0 skips the headline pairs, EVAL=0 the evaluation scoring, ABLATE="..." adds ablations (names in the
# `ablation` function below).
source "$(dirname "$0")/bench_common.sh"
RUN_7B=${RUN_7B:-1}
STEPS=${STEPS:-25}
WARM=${WARM:-5}
A="python3 benchmarks/trl_anchor.py --steps $STEPS --warm $WARM"
P="python3 benchmarks/train_throughput.py --steps $STEPS --warm $WARM"
X=${BENCH_EXTRA:-}  # appended to the stage's runs (CPU dry run: BENCH_EXTRA=--tiny)

# HEADLINE=1 (default): the pairs the targets are read from, the anchor's best configuration then the stage's gpu
# profile, 0.5B then (RUN_7B=1) 7B LoRA r16 all-linear, where the stage's batch-size probe picks the micro-batch.
# ABLATE="name ...": then the named ablations, in the order given; a run that no longer fits the budget is skipped
# (the summary still prints).
S7="$P --arch 7b --lora --profile gpu --batch 32 --steps 8 --warm 3"
Z="python3 -m torch.distributed.run --nproc_per_node 1 benchmarks/train_throughput.py --steps $STEPS --warm $WARM"
ablation() {
  case $1 in
    random) run project_0.5b_gpu_random 100 50 $P --arch 0.5b --profile gpu --sampling random \
      --tag project_0.5b_gpu_random_order $X ;;
    noliger) run project_0.5b_gpu_noliger 100 50 $P --arch 0.5b --profile gpu --liger off \
      --tag project_0.5b_gpu_noliger $X ;;
    torch_attention) run project_0.5b_gpu_cudnn 100 50 $P --arch 0.5b --profile gpu --set sdpa_backends=null \
      --tag project_0.5b_gpu_torch_attention_choice $X ;;
    b128) run project_0.5b_gpu_b128 100 60 $P --arch 0.5b --profile gpu --batch 128 --tag project_0.5b_gpu_b128 $X ;;
    compile) run project_0.5b_gpu_compile 150 80 $P --arch 0.5b --profile gpu --compile \
      --tag project_0.5b_gpu_torch_compile $X ;;
    profile) run project_0.5b_gpu_profiled 100 50 $P --arch 0.5b --profile gpu --steps 3 --warm 3 --torch-profile 3 \
      --tag project_0.5b_gpu_profiled $X ;;
    # DeepSpeed ZeRO-2 in one process: its per-step host work without the cross-GPU reduction, with DeepSpeed's
    # bf16 per-partition overflow check and as the gpu profile runs it (without)
    zero2) run project_0.5b_gpu_zero2_1gpu_overflow_check 100 60 $Z --arch 0.5b --profile gpu --zero 2 \
        --set 'deepspeed={"check_grad_overflow": true}' --tag project_0.5b_gpu_zero2_1gpu_overflow_check $X
      run project_0.5b_gpu_zero2_1gpu 100 60 $Z --arch 0.5b --profile gpu --zero 2 \
        --tag project_0.5b_gpu_zero2_1gpu $X ;;
    pad16_7b) [ "$RUN_7B" = 1 ] && run project_7b_pad16 200 130 $S7 --set 'extra_training_args={"pad_to_multiple_of": 16}' \
      --tag project_7b_lora_gpu_b32_pad16 $X ;;
    profile_7b) [ "$RUN_7B" = 1 ] && run project_7b_profiled 200 130 $P --arch 7b --lora --profile gpu --batch 32 --steps 2 --warm 3 \
      --torch-profile 2 --tag project_7b_lora_gpu_profiled $X ;;
    *) echo "unknown ablation $1" ;;
  esac
}
if [ "${HEADLINE:-1}" = 1 ]; then
  run anchor_0.5b_b64_pre 120 60 $A --arch 0.5b --batch 64 --accum 1 --precompute --tag anchor_0.5b_b64_pre
  run project_0.5b_gpu 150 80 $P --arch 0.5b --profile gpu --tag project_0.5b_gpu $X
  if [ "$RUN_7B" = 1 ]; then
    run anchor_7b_lora_b32_gc 150 100 $A --arch 7b --lora --batch 32 --accum 1 --gc --steps 8 --warm 3 \
      --tag anchor_7b_lora_b32_gc
    run project_7b_lora_gpu_b32 240 150 $S7 --tag project_7b_lora_gpu_b32 $X
  fi
fi
# EVAL=1 (default): evaluation scoring for 0.5B (issue target >= 1,000 pairs/s), then as a second evaluation of
# the same run scores it, with the reference log-probs from its cache.
if [ "${EVAL:-1}" = 1 ]; then
  run eval_0.5b 90 40 python3 benchmarks/eval_throughput.py --batch-sizes 256
  run eval_0.5b_reused_reference 90 40 python3 benchmarks/eval_throughput.py --batch-sizes 256 --reuse-reference
fi
for name in ${ABLATE:-}; do ablation "$name"; done
grep -h -A8 "^PROFILE" /tmp/bench_logs/*profiled*.log 2>/dev/null | cut -c1-160

python3 - "$OUT" /tmp/bench_logs <<'PY'
import glob, json, os, sys
out, logs = sys.argv[1], sys.argv[2]
def load(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []
anchor, project = load("anchor.jsonl"), load("project.jsonl")
print("\n| run | arch | lora | batch | precompute | sampling | pairs/s | tokens/s | MFU | peak GiB | vs best anchor |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in anchor + project:
    best = max((a["pairs_per_s"] for a in anchor if a["arch"] == r["arch"] and a["lora"] == r["lora"]), default=None)
    ratio = f"{r['pairs_per_s'] / best:.2f}x" if best and not r.get("torch_profile") else "-"
    print(f"| {r['tag']} | {r['arch']} | {r['lora']} | {r['batch']} | {r['precompute']} | {r.get('sampling', 'random')} "
          f"| {r['pairs_per_s']} | {r['tokens_per_s']} | {r['mfu'] * 100:.1f}% | {r['peak_mem_gib']} | {ratio} |")
print("\nloss curves (anchor: its logged losses every 5 steps; project: [step, loss]):")
for f in sorted(glob.glob(os.path.join(logs, "*.loss"))):
    line = open(f).read().strip()
    if line.split()[2:]:
        print(" ", line)
for r in project:
    print(f"  LOSS {r['tag']} {r['loss_curve']}")
for r in load("eval.jsonl"):
    print(f"EVAL {r['model']} | {r['reference']} | batch {r['batch_size']}: {r['pairs_per_s']} pairs/s, "
          f"{r['tokens_per_s']} tokens/s, MFU {r['mfu'] * 100:.1f}%, peak {r['peak_memory_mib']:.0f} MiB")
PY
pack_results bench_logs.tgz
