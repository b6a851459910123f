#!/usr/bin/env bash
# Issue 8, 2 GPUs: one GPU vs DDP vs DeepSpeed ZeRO-2, bare TRL (anchor) and the training stage, one call.
# The one-GPU baselines run with CUDA_VISIBLE_DEVICES=0 (a process that sees two GPUs gets nn.DataParallel).
# Kind nvidia-h100-x2 or nvidia-h200-x2; carry .whl and .bench (mkdir -p .bench && cp ../shared/bench/{trl_anchor.py,zero2.json} .bench/);
# after the wheel install of docs/gpu_proof.md. The anchor cannot precompute under torchrun (TRL's cache of an
# in-memory dataset); the stage's gpu profile does (file-backed datasets). Same summary as run_gpu_bench.sh.
set -u
export OUT=${OUT:-bench_out}
export BENCH_MODEL_CACHE=${BENCH_MODEL_CACHE:-/tmp/bench_models}
export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
BUDGET_S=${BUDGET_S:-480}
B=${BATCH:-32}
rm -rf /tmp/bench_logs  # a warm machine keeps the last call's logs; the models in $BENCH_MODEL_CACHE are reused
mkdir -p "$OUT" "$BENCH_MODEL_CACHE" /tmp/bench_logs
[ -f .bench/trl_anchor.py ] || { echo "missing .bench/trl_anchor.py"; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() {
  local name=$1 need=$2; shift 2
  local left=$(( BUDGET_S - SECONDS ))
  if [ "$left" -lt "$need" ]; then echo "== $name skipped (${left}s left)"; return; fi
  local t0=$SECONDS
  timeout "$left" "$@" > "/tmp/bench_logs/$name.log" 2>&1
  echo "== $name rc=$? $(( SECONDS - t0 ))s"
  grep -h "^RESULT" "/tmp/bench_logs/$name.log" || tail -5 "/tmp/bench_logs/$name.log" | cut -c1-400
}
# Liger's layer kernels (optional wheel): the stage's gpu profile uses them when importable, as on one GPU.
if ls .bench/optional/liger_kernel-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/liger .bench/optional/liger_kernel-*.whl \
    && export PYTHONPATH="/tmp/liger:${PYTHONPATH:-}" && echo "liger-kernel: installed"
fi
T="python3 -m torch.distributed.run --nproc_per_node 2"
P="benchmarks/train_throughput.py --arch 0.5b --profile gpu --batch $B ${BENCH_EXTRA:-}"
if [ "${ANCHORS:-1}" = 1 ]; then
  run anchor_1gpu 60 env CUDA_VISIBLE_DEVICES=0 python3 .bench/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 --tag anchor_0.5b_b${B}_1gpu
  run anchor_ddp 60 $T .bench/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 --tag anchor_0.5b_b${B}_ddp
fi
# RUNS: which of the stage's runs, in that order (a run that no longer fits the budget is skipped); the *_b128
# runs double the per-GPU batch (DeepSpeed's per-parameter host work is paid per micro-batch, not per pair).
for r in ${RUNS:-1gpu ddp zero2}; do
  case $r in
    1gpu) run project_1gpu 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --tag project_0.5b_gpu_b${B}_1gpu ;;
    ddp) run project_ddp 80 $T $P --tag project_0.5b_gpu_b${B}_ddp ;;
    zero2) run project_zero2 60 $T $P --zero 2 --tag project_0.5b_gpu_b${B}_zero2 ;;
    1gpu_b128) run project_1gpu_b128 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --batch 128 \
      --tag project_0.5b_gpu_b128_1gpu ;;
    zero2_b128) run project_zero2_b128 60 $T $P --zero 2 --batch 128 --tag project_0.5b_gpu_b128_zero2 ;;
    *) echo "unknown run $r" ;;
  esac
done
# REPEAT=1: the one-GPU baseline again, after the others (machine drift within the call).
if [ "${REPEAT:-0}" = 1 ]; then
  run project_1gpu_again 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --tag project_0.5b_gpu_b${B}_1gpu_again
fi
# PROFILE=1: torch.profiler over 3 steps on every rank (reports and Chrome traces per rank in $OUT).
if [ "${PROFILE:-0}" = 1 ]; then
  run profiled_ddp 80 $T $P --torch-profile 3 --tag profiled_0.5b_gpu_b${B}_ddp
  run profiled_1gpu 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --torch-profile 3 --tag profiled_0.5b_gpu_b${B}_1gpu
  run profiled_zero2 80 $T $P --zero 2 --torch-profile 3 --tag profiled_0.5b_gpu_b${B}_zero2
fi
# ABLATE=1: the ZeRO-2 settings generated before (Trainer's hidden_size² buckets, no overlap), and the anchor's
# random order on one and two GPUs (do length-grouped batches, a different length on each rank, make one rank
# wait for the other?).
if [ "${ABLATE:-0}" = 1 ]; then
  run zero2_old_buckets 80 $T $P --zero 2 --set 'deepspeed={"overlap_comm": false, "reduce_bucket_size": "auto"}' \
    --tag project_0.5b_gpu_b${B}_zero2_auto_buckets_no_overlap
  run random_1gpu 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --sampling random --tag project_0.5b_gpu_b${B}_random_1gpu
  run random_ddp 80 $T $P --sampling random --tag project_0.5b_gpu_b${B}_random_ddp
fi
if [ "${ANCHORS:-1}" = 1 ] && [ -f .bench/zero2.json ]; then
  run anchor_zero2 60 $T .bench/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 \
    --deepspeed .bench/zero2.json --tag anchor_0.5b_b${B}_zero2
fi
# RUN_7B=1: the 7B LoRA pair on the first GPU (anchor's best, then the stage without gradient checkpointing: the
# batch-size probe picks the per-device batch and raises accumulation to keep 32).
if [ "${RUN_7B:-0}" = 1 ]; then
  run anchor_7b_lora_b32_gc 150 env CUDA_VISIBLE_DEVICES=0 python3 .bench/trl_anchor.py --arch 7b --lora --batch 32 \
    --accum 1 --gc --steps 8 --warm 3 --tag anchor_7b_lora_b32_gc
  run project_7b_lora_gpu_b32_nogc 200 env CUDA_VISIBLE_DEVICES=0 python3 benchmarks/train_throughput.py --arch 7b \
    --lora --profile gpu --batch 32 --steps 8 --warm 3 --tag project_7b_lora_gpu_b32_nogc
fi
python3 - "$OUT" <<'PY'
import json, os, sys
rows = []
for name in ("anchor.jsonl", "project.jsonl"):
    path = os.path.join(sys.argv[1], name)
    rows += [json.loads(l) for l in open(path)] if os.path.exists(path) else []
def key(r):
    return r.get("what", "anchor"), r["arch"], r["lora"]
one = {}
for r in rows:
    if r.get("gpus", 1) == 1 and not r.get("torch_profile"):
        one.setdefault(key(r), r["pairs_per_s"])
print("\n| run | gpus | precompute | pairs/s | vs same code on 1 GPU | MFU | peak GiB | step ms |\n|---|---|---|---|---|---|---|---|")
for r in rows:
    base = None if r.get("torch_profile") else one.get(key(r))  # a profiled run is no throughput
    print(f"| {r['tag']} | {r.get('gpus', 1)} | {r['precompute']} | {r['pairs_per_s']} | "
          f"{r['pairs_per_s'] / base:.2f}x | {r['mfu'] * 100:.1f}% | {r['peak_mem_gib']} | {r.get('step_ms', '')} |"
          if base else f"| {r['tag']} | - |")
PY
tar czf "$OUT/bench_logs_2gpu.tgz" -C /tmp bench_logs
# The device returns at most 8 files: the per-rank profile reports and traces go back as one archive (reports
# only, if the traces would make it too large).
if ls "$OUT"/profile_* >/dev/null 2>&1; then
  (cd "$OUT" && tar cf profiles.tar profile_* \
    && { [ "$(stat -c %s profiles.tar)" -lt 15000000 ] || tar cf profiles.tar profile_*.txt || rm -f profiles.tar; } \
    ; rm -f profile_*)
fi
echo "total ${SECONDS}s"
