#!/bin/sh
# Install the build-environment torchvision shim (sglang_fl_ci_tvshim.py: see its docstring)
# into PYTHON's site-packages, activated by a .pth file. Used by ci/install-env.sh and, only when
# built with TORCHVISION_SHIM=1, by platforms/cpu/Dockerfile. Never part of the sglang-fl package.
#
#   ci/envshims/install.sh PYTHON
set -eu
PYTHON=${1:?usage: ci/envshims/install.sh PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$HERE/sglang_fl_ci_tvshim.py" "$SITE/"
echo "import sglang_fl_ci_tvshim" >"$SITE/zz_sglang_fl_ci_tvshim.pth"
