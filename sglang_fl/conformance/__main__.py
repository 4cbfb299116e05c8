"""``python -m sglang_fl.conformance [ARGS]`` is ``sglang-fl conformance [ARGS]``."""

import sys

from sglang_fl.cli import main

raise SystemExit(main(["conformance", *sys.argv[1:]]))
