#!/usr/bin/env bash
# Install SGLang + sglang-fl for CPU serving into a virtualenv, without ever letting pip resolve
# SGLang's own dependencies (they pin CUDA torch: several GB).
#
#   ci/install-env.sh VENV [SGLANG_VERSION]     (default 0.5.21; also 0.5.15)
#
# Used by the README's setup command and by every tox env that runs SGLang.
set -euo pipefail
VENV=${1:?usage: ci/install-env.sh VENV [SGLANG_VERSION]}
SGLANG_VERSION=${2:-0.5.21}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQ="$ROOT/ci/requirements"
[ -f "$REQ/sglang-$SGLANG_VERSION.txt" ] || {
  echo "unsupported SGLANG_VERSION=$SGLANG_VERSION (have: $(ls "$REQ" | sed -n 's/^sglang-\(.*\)\.txt$/\1/p' | tr '\n' ' '))" >&2
  exit 2
}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

"${PIP[@]}" torch==2.13.0                      # CPU build (from the configured index / wheel cache)
"${PIP[@]}" --no-deps -r "$REQ/sglang-$SGLANG_VERSION.txt" torchvision==0.28.0
"${PIP[@]}" -c "$REQ/constraints.txt" -r "$REQ/cpu-common.txt"

# Build-environment shim (see its docstring): the only torchvision wheel for torch 2.13 on PyPI is
# CUDA-linked. Lives in ci/, never in the product; installed as a .pth-activated import hook.
sh "$ROOT/ci/envshims/install.sh" "$VENV/bin/python"

"${PIP[@]}" -c "$REQ/constraints.txt" -e "$ROOT[test]"
"$VENV/bin/python" -c "import torch, sglang, sglang_fl; print('installed: torch', torch.__version__, '| sglang', sglang.__version__, '| sglang-fl', sglang_fl.__version__)"
