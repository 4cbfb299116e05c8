"""Run real SGLang (``sglang.Engine``) on a model in a fresh process; print JSON.

Each configuration needs its own process: SGLang loads plugins (and sglang-fl reads its
settings) once per process.
Usage: python engine_runner.py MODEL_DIR PROMPTS_JSON MAX_NEW [TP [ENGINE_KWARGS_JSON]]
ENGINE_KWARGS_JSON overrides the CPU defaults (fp32); its key ``top_logprobs`` (an int) asks
for each output token's logprob and the top-N logprobs.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    model_dir, prompts_json, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tp_size = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    kwargs = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    top_logprobs = kwargs.pop("top_logprobs", 0)
    import sglang

    prompts = json.loads(prompts_json)
    defaults = {"model_path": model_dir, "dtype": "float32", "tp_size": tp_size}
    engine = sglang.Engine(**{**defaults, "log_level": "warning", **kwargs})
    try:
        outputs = engine.generate(
            input_ids=prompts,
            sampling_params={"max_new_tokens": max_new, "temperature": 0.0, "ignore_eos": True},
            **({"return_logprob": True, "top_logprobs_num": top_logprobs} if top_logprobs else {}),
        )
        from sglang.srt.platforms import current_platform

        result = {
            "output_ids": [out["output_ids"] for out in outputs],
            "platform": type(current_platform).__module__ + "." + type(current_platform).__name__,
        }
        if top_logprobs:
            result["logprobs"] = [_logprobs(out["meta_info"]) for out in outputs]
    finally:
        engine.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


def _logprobs(meta: dict) -> list[dict]:
    """Per output token: its logprob and the top-N (token id -> logprob)."""
    return [
        {"logprob": chosen[0], "top": {str(t[1]): t[0] for t in top}}
        for chosen, top in zip(
            meta["output_token_logprobs"], meta["output_top_logprobs"], strict=True
        )
    ]


if __name__ == "__main__":
    main()
