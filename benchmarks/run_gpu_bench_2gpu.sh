#!/usr/bin/env bash
# Issue 8, 2 GPUs: one GPU vs DDP vs DeepSpeed ZeRO-2, bare TRL (anchor) and the training stage, one call.
# The one-GPU baselines run with CUDA_VISIBLE_DEVICES=0 (a process that sees two GPUs gets nn.DataParallel).
# Kind nvidia-h100-x2 or nvidia-h200-x2; carry .whl (and .bench for the optional Liger wheel), after the wheel
# install of docs/gpu_proof.md. The anchor is benchmarks/trl_anchor.py, its ZeRO-2 config benchmarks/zero2.json.
# The anchor cannot precompute under torchrun (TRL's cache of an in-memory dataset); the stage's gpu profile does
# (file-backed datasets). The summary sets each run against the same code on one GPU. The 7B LoRA
# anchor-against-stage pair on such a machine: CUDA_VISIBLE_DEVICES=0 bash benchmarks/run_gpu_bench.sh.
source "$(dirname "$0")/bench_common.sh"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
B=${BATCH:-32}
# each run may take what is left of the budget (run's MAX_SECONDS), if at least MIN_SECONDS_LEFT is left
T="python3 -m torch.distributed.run --nproc_per_node 2"
P="benchmarks/train_throughput.py --arch 0.5b --profile gpu --batch $B ${BENCH_EXTRA:-}"
if [ "${ANCHORS:-1}" = 1 ]; then
  run anchor_1gpu "$BUDGET_S" 60 env CUDA_VISIBLE_DEVICES=0 python3 benchmarks/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 --tag anchor_0.5b_b${B}_1gpu
  run anchor_ddp "$BUDGET_S" 60 $T benchmarks/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 --tag anchor_0.5b_b${B}_ddp
fi
# RUNS: which of the stage's runs, in that order (a run that no longer fits the budget is skipped). A run is
# MODE (1gpu, ddp or zero2), optionally prefixed 7b_ (7B LoRA r16 all-linear, per-GPU batch 32, 8 timed steps)
# and suffixed _bN (per-GPU batch N instead of BATCH): DeepSpeed's per-parameter host work is paid per
# micro-batch, not per pair, so larger per-GPU batches (or a 7B step) show how much of ZeRO-2's cost it is.
# A final _gathered: TRL's metric all-gathers in every micro-batch (gather_step_metrics: true), the gpu
# profile's setting before it kept them on each rank until a logging step.
# A ZeRO-2 run may also end in _contiguous (deepspeed.contiguous_gradients: true, the gpu profile's setting before
# calls W-Z), _serial (overlap_comm: false) and/or _tensornorm (deepspeed.foreach_grad_norm: false, DeepSpeed's
# norm tensor by tensor, the gpu profile's setting before the seventh session), in that order, before any
# _gathered: e.g. zero2_b128_contiguous, zero2_serial_tensornorm.
# RUNS=" " runs none of them (an empty RUNS means the default).
for r in ${RUNS:-1gpu ddp zero2}; do
  # need: seconds of budget a run must find left; a 7B run also builds or loads 15 GB and its reference pass
  arch=0.5b name=0.5b mode=$r b=$B need=80 extra="" suffix="" ds=""
  case $mode in 7b_*) arch=7b name=7b_lora mode=${mode#7b_} b=32 need=150 extra="--lora --steps 8 --warm 3" ;; esac
  if [[ $mode =~ ^(.+)_gathered$ ]]; then mode=${BASH_REMATCH[1]} suffix=_gathered extra="$extra --set gather_step_metrics=true"; fi
  if [[ $mode =~ ^(.+)_tensornorm$ ]]; then mode=${BASH_REMATCH[1]} suffix=_tensornorm$suffix ds='"foreach_grad_norm":false'; fi
  if [[ $mode =~ ^(.+)_serial$ ]]; then
    mode=${BASH_REMATCH[1]} suffix=_serial$suffix ds='"overlap_comm":false'${ds:+,$ds}
  fi
  if [[ $mode =~ ^(.+)_contiguous$ ]]; then
    mode=${BASH_REMATCH[1]} suffix=_contiguous$suffix ds='"contiguous_gradients":true'${ds:+,$ds}
  fi
  [ -n "$ds" ] && extra="$extra --set deepspeed={$ds}"  # no spaces: $extra is split into words
  if [[ $mode =~ ^(.+)_b([0-9]+)$ ]]; then mode=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}; fi
  if [ -n "$ds" ] && [ "$mode" != zero2 ]; then
    echo "unknown run $r (_contiguous, _serial and _tensornorm are ZeRO-2's)"; continue
  fi
  case $mode in
    1gpu) launcher="env CUDA_VISIBLE_DEVICES=0 python3" ;;
    ddp) launcher=$T ;;
    zero2) launcher=$T extra="$extra --zero 2" ;;
    *) echo "unknown run $r"; continue ;;
  esac
  run "project_$r" "$BUDGET_S" "$need" $launcher benchmarks/train_throughput.py --arch $arch --profile gpu \
    --batch "$b" $extra ${BENCH_EXTRA:-} --tag "project_${name}_gpu_b${b}_${mode}${suffix}"
done
# REPEAT=1: the one-GPU baseline again, after the others (machine drift within the call).
if [ "${REPEAT:-0}" = 1 ]; then
  run project_1gpu_again "$BUDGET_S" 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --tag project_0.5b_gpu_b${B}_1gpu_again
fi
# PROFILE=1: torch.profiler over 3 steps on every rank (reports and Chrome traces per rank in $OUT) of DDP, one GPU
# and ZeRO-2; or PROFILE="zero2 ddp": those modes only, in that order.
PROFILE=${PROFILE:-0}
[ "$PROFILE" = 1 ] && PROFILE="ddp 1gpu zero2"
[ "$PROFILE" = 0 ] && PROFILE=""
for p in $PROFILE; do
  case $p in
    ddp) run profiled_ddp "$BUDGET_S" 80 $T $P --torch-profile 3 --tag profiled_0.5b_gpu_b${B}_ddp ;;
    1gpu) run profiled_1gpu "$BUDGET_S" 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --torch-profile 3 \
      --tag profiled_0.5b_gpu_b${B}_1gpu ;;
    zero2) run profiled_zero2 "$BUDGET_S" 80 $T $P --zero 2 --torch-profile 3 --tag profiled_0.5b_gpu_b${B}_zero2 ;;
    *) echo "unknown profile $p" ;;
  esac
done
# ABLATE=1: the ZeRO-2 settings generated before (Trainer's hidden_size² buckets, no overlap), and the anchor's
# random order on one and two GPUs (do length-grouped batches, a different length on each rank, make one rank
# wait for the other?).
if [ "${ABLATE:-0}" = 1 ]; then
  run zero2_old_buckets "$BUDGET_S" 80 $T $P --zero 2 --set 'deepspeed={"overlap_comm": false, "reduce_bucket_size": "auto"}' \
    --tag project_0.5b_gpu_b${B}_zero2_auto_buckets_no_overlap
  run random_1gpu "$BUDGET_S" 80 env CUDA_VISIBLE_DEVICES=0 python3 $P --sampling random --tag project_0.5b_gpu_b${B}_random_1gpu
  run random_ddp "$BUDGET_S" 80 $T $P --sampling random --tag project_0.5b_gpu_b${B}_random_ddp
fi
if [ "${ANCHORS:-1}" = 1 ] && [ -f benchmarks/zero2.json ]; then
  run anchor_zero2 "$BUDGET_S" 60 $T benchmarks/trl_anchor.py --arch 0.5b --batch "$B" --accum 1 \
    --deepspeed benchmarks/zero2.json --tag anchor_0.5b_b${B}_zero2
fi
python3 - "$OUT" <<'PY'
import json, os, sys
rows = []
for name in ("anchor.jsonl", "project.jsonl"):
    path = os.path.join(sys.argv[1], name)
    rows += [json.loads(l) for l in open(path)] if os.path.exists(path) else []
def key(r):  # a ratio is only meaningful against the one-GPU run that differs in the GPU count alone
    return (r.get("what", "anchor"), r["arch"], r["lora"], r.get("pairs_per_gpu_step", r["batch"]),
            r.get("sampling"))
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
pack_results bench_logs_2gpu.tgz
