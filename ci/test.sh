#!/usr/bin/env bash
# The test command (README): installs what it needs (tox) and runs the CPU matrix.
#   ci/test.sh            every cell of tox.ini's envlist, one at a time
#   ci/test.sh ENV[,ENV]  those cells, their virtualenvs kept for the next run (plain `tox -e`)
#
# The full run removes each cell's virtualenv as soon as the cell has run: every real-SGLang cell
# carries its own torch + triton + SGLang (~2.6 GB), and a CI machine with ~12 GB free ran out of
# disk in the fifth one when they were all kept. Peak use is now one cell plus the Docker images.
# A failing cell does not stop the others; the exit code is 1 if any failed, and the summary says
# which. (tox's own exit code 5 for "no tests" cannot pass: ci/run_pytest.py turns it into 1.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install -q --disable-pip-version-check "tox>=4.20,<5"
if [ $# -gt 0 ]; then
  exec python3 -m tox -e "$1"
fi

mapfile -t envs < <(python3 -m tox list -d --no-desc -q)
[ "${#envs[@]}" -gt 0 ] || { echo "ci/test.sh: tox.ini lists no default envs" >&2; exit 1; }
echo "== ci/test.sh: ${#envs[@]} cells: ${envs[*]} (disk free: $(df -h --output=avail . | tail -1 | tr -d ' '))"

declare -a summary
failed=0
for env in "${envs[@]}"; do
  start=$SECONDS
  if python3 -m tox -e "$env"; then status=OK; else status=FAIL; failed=1; fi
  summary+=("$(printf '  %-16s %-4s %5ss' "$env" "$status" $((SECONDS - start)))")
  rm -rf ".tox/$env"
done

echo "== ci/test.sh: summary (disk free at the end: $(df -h --output=avail . | tail -1 | tr -d ' '))"
printf '%s\n' "${summary[@]}"
exit "$failed"
