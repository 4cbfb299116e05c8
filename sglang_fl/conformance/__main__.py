"""``python -m sglang_fl.conformance [ARGS]`` is ``sglang-fl conformance [ARGS]``."""

from sglang_fl.conformance.cli import main

raise SystemExit(main())
