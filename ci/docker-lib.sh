# shellcheck shell=bash
# Docker on a CI or developer machine (Debian, root, apt and PyPI but no container registry):
# install the engine, start and stop the daemon, make the stand-in base image locally, build the
# CPU image on it. Sourced by ci/docker-cpu.sh and ci/image-standin.sh. Functions: docker_install,
# docker_start LOG, docker_stop, standin_base [MIRROR], dockerfile_arg FILE NAME,
# build_cpu_image WORKDIR. Variables (the first three can be set beforehand):
#
#   DOCKER        the client to use: Debian's docker.io (20.10), which has BuildKit. A newer client
#                 may come first on PATH with only the legacy builder (no RUN --mount).
#   STANDIN_BASE  the local base image: Debian bookworm with a pip-managed Python 3.11 and
#                 ca-certificates, what python:3.11-slim-bookworm and the CANN images offer.
#   IMAGE_NAME    images are tagged IMAGE_NAME:<platform> (default sglang-fl).
#   DOCKERD_PID   the daemon this shell started (empty when one was already running).

DOCKER=${DOCKER:-/usr/bin/docker}
STANDIN_BASE=${STANDIN_BASE:-sglang-fl-standin-base:bookworm-py311}
IMAGE_NAME=${IMAGE_NAME:-sglang-fl}
DOCKERD_PID=""
export DOCKER_BUILDKIT=1

docker_install() {  # docker.io and mmdebstrap from apt, when missing
  if [ -x "$DOCKER" ] && command -v dockerd >/dev/null && command -v mmdebstrap >/dev/null; then
    return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap >/dev/null
}

docker_start() {  # LOG: start dockerd unless a daemon already answers; wait until it does
  "$DOCKER" info >/dev/null 2>&1 && return
  dockerd >"$1" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    "$DOCKER" info >/dev/null 2>&1 && return
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  echo "dockerd did not start; its log ($1):" >&2
  tail -20 "$1" >&2
  return 1
}

docker_stop() {  # stop the daemon docker_start started (no other), and check it is gone
  [ -n "$DOCKERD_PID" ] || return 0
  kill "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then
    echo "dockerd (pid $DOCKERD_PID) did not stop within 60 s" >&2
    return 1
  fi
  DOCKERD_PID=""
  # dockerd runs its own containerd and one shim per container: none may outlive it.
  if pgrep -f "containerd-shim-runc-v2|containerd --config /var/run/docker" >/dev/null; then
    echo "left running after dockerd stopped:" >&2
    pgrep -a -f "containerd" >&2
    return 1
  fi
}

standin_base() {  # [MIRROR]: make $STANDIN_BASE unless it exists (about 35 s)
  "$DOCKER" image inspect "$STANDIN_BASE" >/dev/null 2>&1 && return
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm - "${1:-http://deb.debian.org/debian}" | "$DOCKER" import - "$STANDIN_BASE-rootfs"
  # Debian marks its Python as externally managed; the real bases let pip install system-wide.
  printf 'FROM %s\nRUN rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED\n' "$STANDIN_BASE-rootfs" |
    "$DOCKER" build -q -t "$STANDIN_BASE" - >/dev/null
  "$DOCKER" rmi "$STANDIN_BASE-rootfs" >/dev/null
}

dockerfile_arg() {  # FILE NAME: the default of `ARG NAME=VALUE` in a Dockerfile
  sed -n "s/^ARG $2=\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$1"
}

build_cpu_image() {  # WORKDIR: build IMAGE_NAME:cpu on STANDIN_BASE, torch from this machine
  local root dockerfile wheels torch
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dockerfile="$root/platforms/cpu/Dockerfile"
  wheels="$1/wheels"
  torch=$(dockerfile_arg "$dockerfile" TORCH_VERSION)
  # PyTorch's CPU index is out of reach here, PyPI's torch is the CUDA build: this machine's pip
  # finds the CPU torch in its own wheel folder (find-links). torchvision is PyPI's CUDA-linked
  # wheel, hence TORCHVISION_SHIM=1 (platforms/cpu/Dockerfile says why).
  mkdir -p "$wheels"
  python3 -m pip download -q --no-deps -d "$wheels" "torch==$torch" \
    "torchvision==$(dockerfile_arg "$dockerfile" TORCHVISION_VERSION)"
  if ! compgen -G "$wheels/torch-$torch+cpu-*.whl" >/dev/null; then
    echo "no CPU build of torch $torch reachable by this machine's pip: point its find-links" \
      "at one (found: $(cd "$wheels" && echo torch-*))" >&2
    return 1
  fi
  DOCKER="$DOCKER" bash "$root/docker/build.sh" --base "$STANDIN_BASE" --wheelhouse "$wheels" \
    --name "$IMAGE_NAME" --build-arg TORCHVISION_SHIM=1 cpu
}
