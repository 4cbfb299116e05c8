#!/usr/bin/env bash
# GPU-host runs (the `device` machine; no network there). Carry: .gpu-bundle (from
# ../shared/tools/gpu-bundle.sh), .whl (this project's wheel: `pip wheel --no-deps -w .whl .`)
# and, when a previous run saved one, .jitcache (flashinfer / SGLang JIT and Triton kernels,
# minutes to rebuild otherwise).
#   bash ci/gpu/run.sh STEP [STEP...]     steps: contract tests kernels nvtests serving ops aten e2e
#                                         dispatch sweep
#   (serving1, ops1, e2e1, e2e2, e2e2r: shorter or longer variants, see below)
# Every step writes STEP.log (and its JSON/PNG) under $OUT; a failing step does not stop the rest.
# The limits keep `tests ops dispatch`, `serving nvtests dispatch` and `e2e2r` each inside one
# 10-minute device call (with the JIT kernels built on the way).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
SITE=/tmp/site
if [ ! -d "$SITE/sglang" ]; then
  mkdir -p "$SITE" && tar -C "$SITE" -xJf .gpu-bundle/site.tar.xz
  # the wheel only for its metadata (entry points); the code runs from this working tree
  python3 -m pip install -q --no-deps --no-index --target "$SITE" .whl/sglang_fl-*.whl
  rm -rf "$SITE"/sglang_fl "$SITE"/sglang_fl_*
fi
[ -f .jitcache/jit.tar.xz ] && tar -C "$HOME" -xJf .jitcache/jit.tar.xz
ROOT=$PWD
export PYTHONPATH=$ROOT:$ROOT/platforms/cpu:$ROOT/platforms/ascend:$ROOT/platforms/nvidia:$SITE
export PYTHONUNBUFFERED=1 SGLANG_IS_FLASHINFER_AVAILABLE=false
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=python3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
$PY -c "import torch, triton, sglang, flag_gems, sglang_fl; print('torch', torch.__version__, 'triton', triton.__version__, 'sglang', sglang.__version__, 'flag_gems', flag_gems.__version__)" | tee -a "$OUT/gpu.txt"

step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s"; tail -n 25 "$OUT/$name.log"
}

for s in "$@"; do
  case $s in
    contract) step contract 120 $PY -m pytest -q -p no:cacheprovider -m platform_contract \
                -o addopts="" tests/compat tests/platforms/test_release_hooks_sglang.py ;;
    tests)    step tests 200 $PY -m pytest -q --maxfail=25 -p no:cacheprovider -m cuda -o addopts="" \
                tests/backends tests/platforms/nvidia ;;
    kernels)  step kernels 330 $PY -m pytest -q --maxfail=40 -p no:cacheprovider -m cuda \
                -o addopts="" tests/backends/test_flagos_cuda.py ;;
    newkernels) step kernels 210 $PY -m pytest -q --maxfail=40 -p no:cacheprovider -m cuda \
                -o addopts="" tests/backends/test_flagos_cuda.py -k "activation or gelu or gemma3 \
                or without_scale or layer_norm or mrotary or mrope or deepseek or graph or hot" ;;
    nvtests)  step nvtests 110 $PY -m pytest -q --maxfail=25 -p no:cacheprovider -m cuda -o addopts="" \
                tests/platforms/nvidia ;;
    serving1) step serving 80 $PY -m pytest -q -p no:cacheprovider -m cuda -o addopts="" -s \
                -k default tests/integration/test_cuda_serving.py ;;
    e2e2)     step e2e 250 $PY -m sglang_fl.cli bench e2e --repeats 2 --timeout 120 \
                --json-file "$OUT/e2e.json" ;;
    ops1)     step ops 100 $PY -m sglang_fl.cli bench ops --plot "$OUT/ops.png" \
                --json-file "$OUT/ops.json" ;;
    serving)  step serving 280 $PY -m pytest -q -p no:cacheprovider -m cuda -o addopts="" -s \
                tests/integration/test_cuda_serving.py ;;
    ops)      step ops 110 $PY -m sglang_fl.cli bench ops --plot "$OUT/ops.png" \
                --json-file "$OUT/ops.json" ;;
    aten)     step aten 380 $PY -m sglang_fl.cli bench aten --json-file "$OUT/aten.json" \
                --keep-trace "$OUT/aten-trace.jsonl" ;;
    e2e)      step e2e 560 $PY -m sglang_fl.cli bench e2e --json-file "$OUT/e2e.json" ;;
    e2e2r)    step e2e 580 $PY -m sglang_fl.cli bench e2e --rounds 2 --repeats 5 --timeout 150 \
                --json-file "$OUT/e2e.json" ;;
    sweep)    step sweep 200 $PY -m sglang_fl.bench.flagos_kernels --sweep --tokens 1,64,8192 \
                --json-file "$OUT/sweep.json" ;;
    e2e1)     step e2e 400 $PY -m sglang_fl.cli bench e2e --repeats 1 \
                --json-file "$OUT/e2e.json" ;;
    dispatch) step dispatch 60 $PY -m sglang_fl.cli bench dispatch --device cuda --json ;;
    *) echo "unknown step $s"; exit 2 ;;
  esac
done
tar -C "$HOME" -cJf "$OUT/jit.tar.xz" .cache/flashinfer .cache/tvm-ffi .triton/cache 2>/dev/null
ls -la "$OUT"
