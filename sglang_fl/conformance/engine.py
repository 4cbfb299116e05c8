"""Greedy generation with real SGLang (``sglang.Engine``) in this process; prints one JSON line.

Each configuration needs its own process: SGLang loads plugins, and sglang-fl reads its
settings, once per process. So the conformance suite (and the integration tests) start this
module with the environment of the configuration under test::

    python -m sglang_fl.conformance.engine MODEL_DIR PROMPTS_JSON MAX_NEW [TP_SIZE] [DTYPE]

PROMPTS_JSON is a list of token-id lists. The last stdout line is ``RESULT {"output_ids":
[...], "platform": "<module>.<class>"}``; SGLang's own logs go to stderr.
"""

from __future__ import annotations

import json
import sys

RESULT_PREFIX = "RESULT "


def generate(
    model_dir: str, prompts: list[list[int]], max_new: int, tp_size: int = 1, dtype: str = "float32"
) -> dict:
    import sglang

    engine = sglang.Engine(model_path=model_dir, dtype=dtype, tp_size=tp_size, log_level="warning")
    try:
        outputs = engine.generate(
            input_ids=prompts,
            sampling_params={"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
        )
        from sglang.srt.platforms import current_platform

        platform = type(current_platform)
        return {
            "output_ids": [out["output_ids"] for out in outputs],
            "platform": f"{platform.__module__}.{platform.__name__}",
        }
    finally:
        engine.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, prompts, max_new = argv[0], json.loads(argv[1]), int(argv[2])
    tp_size = int(argv[3]) if len(argv) > 3 else 1
    dtype = argv[4] if len(argv) > 4 else "float32"
    result = generate(model_dir, prompts, max_new, tp_size, dtype)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
