"""Run real SGLang (``sglang.Engine``) on the embedded model in a fresh process; print JSON.

Each configuration needs its own process: SGLang loads plugins (and sglang-fl reads its
settings) once per process. Usage: python engine_runner.py MODEL_DIR PROMPTS_JSON MAX_NEW [TP]
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    model_dir, prompts_json, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tp_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    import sglang

    prompts = json.loads(prompts_json)
    engine = sglang.Engine(
        model_path=model_dir, dtype="float32", tp_size=tp_size, log_level="warning"
    )
    try:
        outputs = engine.generate(
            input_ids=prompts,
            sampling_params={"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
        )
        from sglang.srt.platforms import current_platform

        result = {
            "output_ids": [out["output_ids"] for out in outputs],
            "platform": type(current_platform).__module__ + "." + type(current_platform).__name__,
        }
    finally:
        engine.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
