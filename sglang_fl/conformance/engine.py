"""Greedy generation with real SGLang (``sglang.Engine``) in this process; prints one JSON line.

Each configuration needs its own process: SGLang loads plugins, and sglang-fl reads its
settings, once per process. So the conformance suite (and the integration tests) start this
module with the environment of the configuration under test::

    python -m sglang_fl.conformance.engine MODEL_DIR PROMPTS_JSON MAX_NEW [TP_SIZE [KWARGS_JSON]]

PROMPTS_JSON is a list of token-id lists. KWARGS_JSON is an object of ``sglang.Engine``
arguments (default ``{"dtype": "float32"}``); its key ``top_logprobs`` (an int) asks for each
output token's logprob (``logprobs``: per prompt, per position) and the top N (``top``: per
position, ``[logprob, token id]`` pairs, best first). The last stdout line is ``RESULT
{"output_ids": [...], "platform": "<module>.<class>", ...}``; SGLang's own logs go to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

RESULT_PREFIX = "RESULT "


def generate(
    model_dir: str,
    prompts: list[list[int]],
    max_new: int,
    tp_size: int = 1,
    engine_kwargs: dict[str, Any] | None = None,
) -> dict:
    import sglang

    kwargs = {"dtype": "float32", "log_level": "warning", **(engine_kwargs or {})}
    top_logprobs = kwargs.pop("top_logprobs", 0)
    engine = sglang.Engine(model_path=model_dir, tp_size=tp_size, **kwargs)
    try:
        outputs = engine.generate(
            input_ids=prompts,
            sampling_params={"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
            **({"return_logprob": True, "top_logprobs_num": top_logprobs} if top_logprobs else {}),
        )
        from sglang.srt.platforms import current_platform

        platform = type(current_platform)
        result = {
            "output_ids": [out["output_ids"] for out in outputs],
            "platform": f"{platform.__module__}.{platform.__name__}",
        }
        if top_logprobs:  # per prompt and position: the chosen token's logprob, the top N
            metas = [out["meta_info"] for out in outputs]
            result["logprobs"] = [[e[0] for e in m["output_token_logprobs"]] for m in metas]
            result["top"] = [
                [[[e[0], e[1]] for e in position] for position in m["output_top_logprobs"]]
                for m in metas
            ]
        return result
    finally:
        engine.shutdown()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, prompts, max_new = argv[0], json.loads(argv[1]), int(argv[2])
    tp_size = int(argv[3]) if len(argv) > 3 else 1
    kwargs = json.loads(argv[4]) if len(argv) > 4 else {}
    result = generate(model_dir, prompts, max_new, tp_size, kwargs)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
