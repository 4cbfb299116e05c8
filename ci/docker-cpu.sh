#!/usr/bin/env bash
# The docker-cpu CI cell (`tox -e docker-cpu`): the CPU serving image, built and run for real,
# starting from a machine that has no Docker at all.
#
#   ci/docker-cpu.sh [PYTHON [PYTEST ARGS...]]    PYTHON: has pytest, requests, psutil (tox's)
#
# 1. installs docker.io and mmdebstrap from apt when missing and starts dockerd itself (unless a
#    daemon already runs: then it uses that one and leaves it running);
# 2. makes the base image locally (no registry here): Debian bookworm + Python 3.11;
# 3. builds platforms/cpu/Dockerfile on it with docker/build.sh, torch from this machine's
#    wheel folder (the registry has no CPU build);
# 4. runs tests/docker (marker docker): the image's configuration (user, entry point,
#    healthcheck timings, labels), health, completions, chat and streaming chat from the host, a
#    restart with a mounted YAML and an env override checked through the dispatch log inside the
#    container, bad configuration, and that every stop leaves nothing running;
# 5. stops the daemon it started and checks that none of its processes is left.
# Needs root, apt and PyPI. WORKDIR: $DOCKER_CPU_WORK (default /tmp/sglang-fl-docker-cpu).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${1:-python3}
shift || true
WORK=${DOCKER_CPU_WORK:-/tmp/sglang-fl-docker-cpu}
mkdir -p "$WORK"
# shellcheck source=ci/docker-lib.sh
source "$ROOT/ci/docker-lib.sh"
trap 'docker_stop || true' EXIT

step() { echo "== docker-cpu: $* ($(date -u +%H:%M:%S))"; }

step "installing and starting Docker"
docker_install
docker_start "$WORK/dockerd.log"
"$DOCKER" version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'

step "making the base image $STANDIN_BASE"
standin_base

step "building $IMAGE_NAME:cpu"
build_cpu_image "$WORK"

step "running the image (tests/docker)"
cd "$ROOT"
DOCKER="$DOCKER" CPU_IMAGE="$IMAGE_NAME:cpu" "$PYTHON" ci/run_pytest.py -m docker tests/docker "$@"

left=$("$DOCKER" ps -aq --filter "ancestor=$IMAGE_NAME:cpu")
[ -z "$left" ] || { echo "containers of $IMAGE_NAME:cpu left: $left" >&2; exit 1; }
step "stopping Docker"
docker_stop
trap - EXIT
step "done"
