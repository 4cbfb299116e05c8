#!/usr/bin/env bash
# Build platforms/ascend/Dockerfile on a stand-in base image (Debian bookworm, Python 3.11, no
# CANN) and check the result without an NPU. This proves every step of the image that does not
# need the CANN stack; it proves nothing about running on an NPU.
#
#   ci/ascend-image-standin.sh [WORKDIR]        default WORKDIR: /tmp/sglang-fl-ascend-standin
#
# Needs root on a Debian host with apt and PyPI (installs docker.io and mmdebstrap when missing)
# and a CPU torch wheel reachable by the host's pip (on x86-64, PyPI's torch is the CUDA build:
# point pip's find-links at a CPU wheel, or set TORCH_SPEC). No container registry is needed:
# the base image is bootstrapped locally and the build installs from a local package index made
# from a `pip download` of exactly the pinned versions (the Dockerfile's build-arg defaults).
# About 6 minutes on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${1:-/tmp/sglang-fl-ascend-standin}
PORT=${PORT:-8765}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE=sglang-fl-standin-base:py311
IMAGE=sglang-fl-ascend:standin
DOCKERFILE="$ROOT/platforms/ascend/Dockerfile"
mkdir -p "$WORK"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

arg() {  # the default of `ARG NAME=VALUE` in the Dockerfile
  sed -n "s/^ARG $1=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$DOCKERFILE"
}

if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  dockerd >"$WORK/dockerd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi

# 1. The stand-in base: what the CANN image offers the Dockerfile (python3.11 + pip, a
#    pip-managed interpreter, useradd), nothing of CANN.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm - "$MIRROR" | docker import - "$BASE-raw"
  printf 'FROM %s\nRUN rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED\n' "$BASE-raw" |
    docker build -q -t "$BASE" - >/dev/null
fi

# 2. A local package index holding exactly the pinned versions.
WH="$WORK/wh"
mkdir -p "$WH"
printf 'torch==%s\ntorch-npu==%s\n' "$(arg TORCH_VERSION)" "$(arg TORCH_NPU_VERSION)" >"$WORK/c.txt"
python3 -m pip download -q -d "$WH" -c "$WORK/c.txt" "${TORCH_SPEC:-torch==$(arg TORCH_VERSION)}" \
  "torch-npu==$(arg TORCH_NPU_VERSION)" -r "$ROOT/platforms/ascend/requirements-npu.txt" \
  "sqlalchemy==$(arg SQLALCHEMY_VERSION)" "setuptools>=77" wheel pyyaml pydantic
python3 -m pip download -q -d "$WH" --no-deps "sglang==$(arg SGLANG_VERSION)" \
  "xgrammar==$(arg XGRAMMAR_VERSION)" "triton-ascend==$(arg TRITON_ASCEND_VERSION)" \
  "pybind11==$(arg PYBIND11_VERSION)" "flag-gems==$(arg FLAGGEMS_VERSION)"
python3 - "$WORK" <<'EOF'
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

work = Path(sys.argv[1])
projects: dict[str, list[str]] = {}
for f in sorted((work / "wh").iterdir()):
    parse = parse_wheel_filename if f.suffix == ".whl" else parse_sdist_filename
    projects.setdefault(canonicalize_name(parse(f.name)[0]), []).append(f.name)
for name, files in projects.items():
    page = work / "simple" / name / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("".join(f'<a href="../../wh/{f}">{f}</a><br>\n' for f in files))
EOF
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$WORK" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
sleep 1
INDEX="http://127.0.0.1:$PORT/simple"

# 3. The image, every step, on the stand-in base.
docker build --network host -f "$DOCKERFILE" -t "$IMAGE" \
  --build-arg BASE_IMAGE="$BASE" --build-arg TORCH_INDEX_URL="$INDEX" \
  --build-arg PIP_INDEX_URL="$INDEX" "$ROOT"

# 4. Checks that need no NPU. Without CANN, torch_npu cannot load, so torch's device-backend
#    autoload is switched off; our detection must say "no Ascend" and the backend must say why.
docker run --rm --entrypoint bash -e TORCH_DEVICE_BACKEND_AUTOLOAD=0 "$IMAGE" -c '
set -euo pipefail
test "$(id -u)" != 0
python3 - <<PY
import sglang_fl_ascend
from sglang_fl_ascend.backend import AscendBackend
assert sglang_fl_ascend.BUNDLE.detect() is False
reason = AscendBackend().availability().reason
assert reason.startswith("torch_npu cannot be imported"), reason
print("detect: False;", reason)
PY
SGLANG_FL_PLATFORM=ascend sglang-fl config | grep -E "^(platform|dist_backend) "
# SGLang imports and parses its arguments with the dependency list of the image. (Its plugin
# loading logs a triton-ascend error here, "0 active drivers": no CANN on the stand-in.)
python3 -m sglang.launch_server --help >/dev/null 2>&1 && echo "sglang.launch_server --help: ok"
'
echo "ascend image built and checked on the stand-in base: $IMAGE"
