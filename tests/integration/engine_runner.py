"""Run real SGLang (``sglang.Engine``) on the embedded model in a fresh process; print JSON.

Each configuration needs its own process: SGLang loads plugins (and sglang-fl reads its
settings) once per process. Usage:
python engine_runner.py MODEL_DIR PROMPTS_JSON MAX_NEW [TP] [OPTIONS_JSON]
OPTIONS_JSON: {"engine": {extra Engine arguments}, "top_logprobs": N} (N > 0 also reports the
chosen tokens' logprobs and the top N per position).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    model_dir, prompts_json, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tp_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    top = int(options.get("top_logprobs", 0))
    import sglang

    prompts = json.loads(prompts_json)
    engine_args = {"dtype": "float32", "log_level": "warning", **options.get("engine", {})}
    engine = sglang.Engine(model_path=model_dir, tp_size=tp_size, **engine_args)
    try:
        logprob_args = {"return_logprob": True, "top_logprobs_num": top} if top else {}
        outputs = engine.generate(
            input_ids=prompts,
            sampling_params={"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
            **logprob_args,
        )
        from sglang.srt.platforms import current_platform

        result = {
            "output_ids": [out["output_ids"] for out in outputs],
            "platform": type(current_platform).__module__ + "." + type(current_platform).__name__,
        }
        if top:
            result["logprobs"] = [
                [entry[0] for entry in out["meta_info"]["output_token_logprobs"]] for out in outputs
            ]
            result["top"] = [
                [
                    [[e[0], e[1]] for e in position]
                    for position in out["meta_info"]["output_top_logprobs"]
                ]
                for out in outputs
            ]
    finally:
        engine.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
