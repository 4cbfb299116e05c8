#!/usr/bin/env bash
# Build the sglang-fl serving images, platforms/<target>/Dockerfile, from the repository root.
#
#   docker/build.sh [OPTIONS] [TARGET...] [-- DOCKER BUILD OPTIONS]
#                                   TARGET: cpu, nvidia, ascend or all (the default)
#
#   --base IMAGE        BASE_IMAGE of every target built here (default: each Dockerfile's upstream
#                       image); e.g. a local base on a machine that cannot pull (docs/images.md)
#   --wheelhouse DIR    cpu: add the wheels in DIR to docker/wheelhouse/ (an offline build input)
#                       and take torch/torchvision from there instead of PyTorch's CPU index
#   --name NAME         image name (default sglang-fl): tags NAME:TARGET and NAME:VERSION-TARGET
#   --build-arg K=V     passed to `docker build` (repeatable), as is everything after `--`
#                       (e.g. -- --network host --progress plain)
#
# Environment: DOCKER, the client (default docker; it must build with BuildKit, as every client
# since Docker 23 does; DOCKER_BUILDKIT=1 is set for older ones). HOST_CA, a CA bundle handed to
# pip inside the build as the secret `hostca` (default: PIP_CERT or SSL_CERT_FILE, when set).
# The OCI labels get this checkout's version, git revision and the build time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER=${DOCKER:-docker}
export DOCKER_BUILDKIT=1
ALL=(cpu nvidia ascend)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit "$1"; }

targets=() base="" wheelhouse="" name=sglang-fl passthrough=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --wheelhouse) wheelhouse=${2:?--wheelhouse needs a folder}; shift 2 ;;
    --name) name=${2:?--name needs a name}; shift 2 ;;
    -h | --help) usage 0 ;;
    all) targets+=("${ALL[@]}"); shift ;;
    cpu | nvidia | ascend) targets+=("$1"); shift ;;
    --build-arg) passthrough+=(--build-arg "${2:?--build-arg needs K=V}"); shift 2 ;;
    --) shift; passthrough+=("$@"); break ;;
    *) echo "docker/build.sh: unknown argument '$1' (targets: cpu, nvidia, ascend, all;" \
         "options: --base, --wheelhouse, --name, --build-arg, --)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml")
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
  revision+="-dirty"
fi
common=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
ca=${HOST_CA:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
[ -z "$ca" ] || common+=(--secret "id=hostca,src=$ca")
[ -z "$base" ] || common+=(--build-arg "BASE_IMAGE=$base")

if [ -n "$wheelhouse" ]; then
  for wheel in "$wheelhouse"/*.whl; do
    [ -e "$wheel" ] || { echo "docker/build.sh: no wheels in $wheelhouse" >&2; exit 2; }
    cp -f "$wheel" "$ROOT/docker/wheelhouse/"
  done
fi

for target in "${targets[@]}"; do
  extra=()
  [ "$target" != cpu ] || [ -z "$wheelhouse" ] || extra+=(--build-arg "TORCH_INDEX_URL=")
  start=$(date +%s)
  "$DOCKER" build -f "$ROOT/platforms/$target/Dockerfile" -t "$name:$target" \
    -t "$name:$version-$target" "${common[@]}" "${extra[@]}" "${passthrough[@]}" "$ROOT"
  size=$("$DOCKER" image inspect -f '{{.Size}}' "$name:$target")
  echo "built $name:$target in $(($(date +%s) - start)) s, $((size / 1000000)) MB"
done
