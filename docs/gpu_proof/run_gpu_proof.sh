#!/usr/bin/env bash
# GPU proof of the training stage (docs/gpu_proof.md): on a 2-GPU machine, from the repository root, with
# trl/datasets/deepspeed/kedro/bitsandbytes importable. Runs the stage itself four times:
# accelerate (2 GPUs, DDP), deepspeed ZeRO-2 (2 GPUs), deepspeed ZeRO-3 (2 GPUs), QLoRA (1 GPU).
# Logs and metrics go to ${OUT:-gpu_proof_out}.
set -u
OUT=${OUT:-gpu_proof_out}
mkdir -p "$OUT" /tmp/gpu_logs
export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 - <<'PY'
import importlib
for m in ("torch", "transformers", "trl", "datasets", "deepspeed", "accelerate", "peft", "kedro", "pyarrow",
          "bitsandbytes"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as exc:  # noqa: BLE001
        print(m, "MISSING", exc)
import torch
print("gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0))
PY
python3 docs/gpu_proof/prepare.py || exit 1
KEDRO="python3 -m kedro run --pipelines training --env gpu_0_5b"
run() {
  local name=$1; shift
  local start; start=$(date +%s)
  env "$@" > "/tmp/gpu_logs/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - start ))s"
  grep -E "training: launching|falling back|ZeRO stage|training process [0-9]|final (model|adapter) written|TrainingRunError|Error:" \
    "/tmp/gpu_logs/$name.log" | cut -c1-400 | head -12
  cp data/08_reporting/training_metrics.json "$OUT/$name.metrics.json" 2>/dev/null
  python3 - "$OUT/$name.metrics.json" <<'PY'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except Exception as exc:  # noqa: BLE001
    sys.exit(f"no metrics: {exc}")
f = m["final"]
print("   run:", json.dumps(m["run"]))
print("   train/loss %.4f  train_set/acc %.3f  eval/acc %.3f  categories %d  health %s" % (
    f.get("train/loss", float("nan")), f.get("train_set/rewards/accuracies", float("nan")),
    f.get("eval/rewards/accuracies", float("nan")), len(m["per_category"]), m["health"]["warnings"]))
PY
  rm -f data/08_reporting/training_metrics.json
}
run accelerate TRAIN_MODE=accelerate OUTPUT_DIR=data/06_models/gpu_accelerate \
  $KEDRO --params training.launch.num_processes=2
run zero2 TRAIN_MODE=deepspeed OUTPUT_DIR=data/06_models/gpu_zero2 \
  $KEDRO --params training.launch.num_processes=2,training.deepspeed.zero_stage=2
run zero3 TRAIN_MODE=deepspeed OUTPUT_DIR=data/06_models/gpu_zero3 \
  $KEDRO --params training.launch.num_processes=2,training.deepspeed.zero_stage=3
run qlora CUDA_VISIBLE_DEVICES=0 TRAIN_MODE=single OUTPUT_DIR=data/06_models/gpu_qlora \
  $KEDRO --params training.lora.qlora=true,training.learning_rate=1e-4
ls -la data/06_models/gpu_*/final | head -60
tar czf "$OUT/logs.tgz" -C /tmp gpu_logs
