#!/usr/bin/env bash
# Scale-out of the training stage (issue 9), on one host with N GPUs: the same `kedro run --pipelines training`
# and launch path as everywhere else, deepspeed ZeRO-2, full fine-tuning of a random-init Qwen2-0.5B
# architecture, on 1, 2, 4 (and 8 where there are 8) GPUs. Prints pairs/s per run.
#   bash docs/gpu_proof/run_scaling.sh          (after the wheel install of docs/gpu_proof.md)
#   GPUS="1 2" ENV=gpu BATCH=64 STEPS=40 bash docs/gpu_proof/run_scaling.sh   (the gpu profile: conf/gpu/)
# pairs/s is the stage's own steady-state figure (training_metrics.json: run.pairs_per_s_after_warmup, the
# steps after the first 5); train_runtime_s, which includes start-up and warm-up, is printed beside it.
set -u
OUT=${OUT:-gpu_proof_out}
STEPS=${STEPS:-60}
BATCH=${BATCH:-16}
ENV=${ENV:-gpu_0_5b}  # the Kedro environment: gpu_0_5b (plain settings) or gpu (throughput settings)
mkdir -p "$OUT" /tmp/gpu_logs
export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1
python3 docs/gpu_proof/prepare.py || exit 1
for n in ${GPUS:-1 2 4 8}; do
  [ "$n" -le "$NGPU" ] || continue
  name=zero2_${n}gpu
  start=$(date +%s)
  TRAIN_MODE=deepspeed OUTPUT_DIR=data/06_models/scale_$n MODEL_NAME_OR_PATH=data/06_models/qwen2_0_5b_random \
    python3 -m kedro run --pipelines training --env "$ENV" \
    --params "training.launch.num_processes=$n,training.deepspeed.zero_stage=2,training.max_steps=$STEPS,training.per_device_train_batch_size=$BATCH,training.eval_strategy=no,training.eval_per_bias_type=false,training.save_strategy=no" \
    > "/tmp/gpu_logs/$name.log" 2>&1
  echo "== $name rc=$? wall $(( $(date +%s) - start ))s"
  grep -E "launching|ZeRO stage|Error" "/tmp/gpu_logs/$name.log" | cut -c1-300 | head -4
  cp data/08_reporting/training_metrics.json "$OUT/$name.metrics.json" 2>/dev/null
  python3 - "$OUT/$name.metrics.json" "$n" "$BATCH" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); n, b = int(sys.argv[2]), int(sys.argv[3])
run = m["run"]
rt, steps = run.get("train_runtime_s"), run.get("global_step")
print(f"   RESULT gpus={n} steps={steps} batch/gpu={b} pairs/s after warm-up={run.get('pairs_per_s_after_warmup')}"
      f" over {run.get('timed_steps')} steps; train_runtime_s={rt} ({steps * b * n / rt:.1f} pairs/s with warm-up)"
      f" loss={m['final'].get('train/loss')}")
PY
done
tar czf "$OUT/scaling_logs.tgz" -C /tmp gpu_logs
