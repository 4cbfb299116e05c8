#!/usr/bin/env bash
# Build a vendor image on a stand-in base (no CUDA / CANN stack here) and check the result
# without the accelerator. This proves every step of the Dockerfile that does not need the vendor
# stack; it proves nothing about running on a GPU or an NPU.
#
#   ci/image-standin.sh nvidia|ascend [WORKDIR]     default WORKDIR: /tmp/sglang-fl-standin
#
# nvidia: the base is the CPU image (IMAGE_NAME:cpu, built first when missing, as in
#   ci/docker-cpu.sh): it has SGLang and torch like SGLang's CUDA image, minus CUDA. CUDA_STACK=0
#   skips the one check that needs the CUDA stack; FlagGems and sglang-fl install from PyPI and
#   the checkout as on the real base. About 1 minute with the CPU image present.
# ascend: the base is the Debian stand-in (Python 3.11, no CANN); the build installs from a local
#   package index made from a `pip download` of exactly the pinned versions (the Dockerfile's
#   build-arg defaults), torch from this machine's CPU wheel. About 2 minutes.
# Needs root on a Debian host with apt and PyPI (installs docker.io and mmdebstrap when missing);
# starts dockerd unless one runs, and stops what it started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${1:?usage: ci/image-standin.sh nvidia|ascend [WORKDIR]}
WORK=${2:-/tmp/sglang-fl-standin}
PORT=${PORT:-8765}
DOCKERFILE="$ROOT/platforms/$TARGET/Dockerfile"
[ -f "$DOCKERFILE" ] || { echo "no platform '$TARGET' (platforms/$TARGET/Dockerfile)" >&2; exit 2; }
mkdir -p "$WORK"
# shellcheck source=ci/docker-lib.sh
source "$ROOT/ci/docker-lib.sh"
IMAGE="$IMAGE_NAME:$TARGET"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  docker_stop || true
}
trap cleanup EXIT

docker_install
docker_start "$WORK/dockerd.log"
standin_base

arg() { dockerfile_arg "$DOCKERFILE" "$1"; }

# A local package index holding exactly the pinned Ascend set (the build reaches it over the
# host network), so the build needs neither the PyTorch CPU index nor Ascend's mirrors.
ascend_index() {
  local wh="$WORK/wh"
  mkdir -p "$wh"
  printf 'torch==%s\ntorch-npu==%s\n' "$(arg TORCH_VERSION)" "$(arg TORCH_NPU_VERSION)" >"$WORK/c.txt"
  python3 -m pip download -q -d "$wh" -c "$WORK/c.txt" "${TORCH_SPEC:-torch==$(arg TORCH_VERSION)}" \
    "torch-npu==$(arg TORCH_NPU_VERSION)" -r "$ROOT/platforms/ascend/requirements-npu.txt" \
    "sqlalchemy==$(arg SQLALCHEMY_VERSION)" "setuptools>=77" wheel pyyaml pydantic
  python3 -m pip download -q -d "$wh" --no-deps "sglang==$(arg SGLANG_VERSION)" \
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
}

build() {  # BASE, then build args and `--`-options for docker/build.sh
  local base=$1
  shift
  DOCKER="$DOCKER" bash "$ROOT/docker/build.sh" --base "$base" --name "$IMAGE_NAME" "$TARGET" "$@"
}

# Checks that need no accelerator: the image runs as an unprivileged user, the bundle is
# registered and says "not here" with its reason, its YAML configures the platform's collective
# backend, and SGLang starts far enough to parse its arguments with the image's packages.
check() {  # the bundle's expected dist backend, then `docker run` options
  local dist=$1
  shift
  "$DOCKER" run --rm "$@" -e TARGET="$TARGET" -e DIST="$dist" --entrypoint bash "$IMAGE" -c '
set -euo pipefail
test "$(id -u)" = 10001
python3 - <<PY
from sglang_fl.bundles import discover_bundles

bundle = discover_bundles()["$TARGET"]
assert bundle.detect() is False, "detected an accelerator on the stand-in"
try:
    availability = bundle.load_backend().availability()
    reason = "" if availability.ok else availability.reason
except Exception as exc:  # the vendor package itself may not import without its stack
    reason = f"backend failed to load: {exc!r}"
assert reason, "the vendor backend claims to be available on the stand-in"
print("detect: False; vendor.%s unavailable: %s" % (bundle.vendor, reason))
PY
SGLANG_FL_PLATFORM=$TARGET sglang-fl config | grep -E "^(platform|dist_backend) " | tee /dev/stderr |
  grep -qE "^dist_backend +$DIST "
python3 -m sglang.launch_server --help >/dev/null 2>&1 && echo "sglang.launch_server --help: ok"
python3 -c "from importlib.metadata import version as v; print(\"flag-gems\", v(\"flag-gems\"))"
'
}

# The image's configuration as Docker recorded it from the shared tail (docker/dockerfile_tail.py):
# user, working directory, entry point, port, healthcheck and its timings, labels.
check_config() {  # the healthcheck's start period in seconds
  "$DOCKER" image inspect "$IMAGE" >"$WORK/inspect.json"
  python3 - "$WORK/inspect.json" "$TARGET" "$1" "$(arg SGLANG_VERSION)" <<'PY'
import json
import sys

path, target, start_period, sglang = sys.argv[1:]
with open(path) as f:
    (config,) = [image["Config"] for image in json.load(f)]
s = 1_000_000_000  # Docker's durations are in nanoseconds
health, labels = config["Healthcheck"], config["Labels"]
found = {
    "user": config["User"], "workdir": config["WorkingDir"], "entrypoint": config["Entrypoint"],
    "ports": sorted(config["ExposedPorts"]), "healthcheck": health["Test"],
    "timings": [health["Interval"], health["Timeout"], health["StartPeriod"], health["Retries"]],
    "title": labels["org.opencontainers.image.title"], "platform": labels["sglang-fl.platform"],
    "sglang": labels["sglang-fl.sglang-version"],
}
expected = {
    "user": "10001", "workdir": "/home/sglang", "entrypoint": ["sglang-fl-entrypoint"],
    "ports": ["30000/tcp"],
    "healthcheck": ["CMD", "python3", "/usr/local/bin/sglang-fl-healthcheck"],
    "timings": [10 * s, 10 * s, int(start_period) * s, 3],
    "title": f"sglang-fl-{target}", "platform": target, "sglang": sglang,
}
wrong = [f"{k}: {found[k]!r}, expected {v!r}" for k, v in expected.items() if found[k] != v]
assert not wrong, "image config: " + "; ".join(wrong)
print(f"config: user 10001, entry point, port, healthcheck (start period {start_period} s), labels")
PY
}

case "$TARGET" in
  nvidia)
    "$DOCKER" image inspect "$IMAGE_NAME:cpu" >/dev/null 2>&1 || build_cpu_image "$WORK"
    build "$IMAGE_NAME:cpu" --build-arg CUDA_STACK=0
    check_config 600
    check nccl
    ;;
  ascend)
    ascend_index
    index="http://127.0.0.1:$PORT/simple"
    build "$STANDIN_BASE" --build-arg "TORCH_INDEX_URL=$index" --build-arg "PIP_INDEX_URL=$index" \
      -- --network host
    check_config 600
    # Without CANN, torch_npu cannot load: torch's device-backend autoload is switched off.
    check hccl -e TORCH_DEVICE_BACKEND_AUTOLOAD=0
    ;;
  *) echo "no stand-in recipe for '$TARGET' (have: nvidia, ascend)" >&2; exit 2 ;;
esac
echo "$TARGET image built and checked on a stand-in base: $IMAGE"
