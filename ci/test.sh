#!/usr/bin/env bash
# The test command (README): installs what it needs (tox) and runs the CPU matrix.
#   ci/test.sh [TOX_ENVS]
# default: lint,unit,ascend-contract,cpu,cpu-0515,docker-cpu,nvidia-image,ascend-image
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install -q --disable-pip-version-check "tox>=4.20,<5"
exec python3 -m tox -e "${1:-lint,unit,ascend-contract,cpu,cpu-0515,docker-cpu,nvidia-image,ascend-image}"
