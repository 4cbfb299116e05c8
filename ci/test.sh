#!/usr/bin/env bash
# The test command (README): installs what it needs (tox) and runs the CPU matrix.
#   ci/test.sh [TOX_ENVS]      default: tox.ini's envlist (the cells CI runs here)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install -q --disable-pip-version-check "tox>=4.20,<5"
if [ $# -gt 0 ]; then
  exec python3 -m tox -e "$1"
fi
exec python3 -m tox
