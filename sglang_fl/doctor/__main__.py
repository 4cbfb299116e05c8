"""``python -m sglang_fl.doctor [ARGS]`` is ``sglang-fl doctor [ARGS]``."""

from sglang_fl.doctor.cli import main

raise SystemExit(main())
