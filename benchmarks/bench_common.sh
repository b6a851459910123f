# Sourced by run_gpu_bench.sh and run_gpu_bench_2gpu.sh: the environment, the budgeted `run`, the optional Liger
# install and the packing of what comes back. Needs the wheels of docs/gpu_proof.md on PYTHONPATH; the bare-TRL
# anchor is benchmarks/trl_anchor.py.
set -u
export OUT=${OUT:-bench_out}
export BENCH_MODEL_CACHE=${BENCH_MODEL_CACHE:-/tmp/bench_models}
export KEDRO_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
BUDGET_S=${BUDGET_S:-480}
rm -rf /tmp/bench_logs  # a warm machine keeps the last call's logs; the models in $BENCH_MODEL_CACHE are reused
mkdir -p "$OUT" "$BENCH_MODEL_CACHE" /tmp/bench_logs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c 'import torch, transformers, trl; print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__)'

# run NAME MAX_SECONDS MIN_SECONDS_LEFT CMD...: skipped when the budget cannot hold it; log kept, RESULT echoed
run() {
  local name=$1 limit=$2 need=$3; shift 3
  local left=$(( BUDGET_S - SECONDS ))
  if [ "$left" -lt "$need" ]; then echo "== $name skipped (${left}s left of the budget)"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" > "/tmp/bench_logs/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc $(( SECONDS - t0 ))s"
  grep -h "^RESULT" "/tmp/bench_logs/$name.log" || tail -5 "/tmp/bench_logs/$name.log" | cut -c1-400
  # the anchor prints its train logs as dicts: keep its loss curve for the comparison
  case $name in anchor_*) ;; *) return ;; esac
  grep -o "{'loss': '[0-9.e+-]*'" "/tmp/bench_logs/$name.log" | grep -o "[0-9][0-9.e+-]*" | tr '\n' ' ' \
    | sed "s/^/LOSS $name /" > "/tmp/bench_logs/$name.loss"
}

# pack_results ARCHIVE: the logs as $OUT/ARCHIVE; the device returns at most 8 files, so the profile reports and
# traces go back as one archive (reports only, if the traces would make it too large)
pack_results() {
  tar czf "$OUT/$1" -C /tmp bench_logs
  if ls "$OUT"/profile_* >/dev/null 2>&1; then
    (cd "$OUT" && tar cf profiles.tar profile_* \
      && { [ "$(stat -c %s profiles.tar)" -lt 15000000 ] || tar cf profiles.tar profile_*.txt || rm -f profiles.tar; } \
      ; rm -f profile_*)
  fi
  echo "total ${SECONDS}s"
}

# Liger's layer kernels (optional wheel in .bench/optional): the gpu profile turns them on when importable.
if ls .bench/optional/liger_kernel-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/liger \
    .bench/optional/liger_kernel-*.whl \
    && export PYTHONPATH="/tmp/liger:${PYTHONPATH:-}" && echo "liger-kernel: installed for the stage's runs"
fi
