"""Which architectures the platform serves: zoo models through real SGLang on the bundle.

A vendor's chip may lack what some SGLang path of an architecture needs (Triton, a CUDA-only
kernel) while serving the embedded Qwen2 fine; this check tells them which architectures they
serve before a user finds out. Each zoo model (:mod:`sglang_fl.models.zoo`: tiny seeded
checkpoints of the architectures SGLang serves) runs in one ``sglang.Engine`` process on the
bundle with its own defaults, and its greedy ids are compared with HF transformers' (fp32,
eager attention, on the CPU). Where they differ, a second run with Layer 2 off tells whether
SGLang's own math differs from HF's the same way (then the platform serves what SGLang
computes: a pass, with that said) or the platform is at fault.

One check per model: ``pass``; ``refused`` when sglang-fl refused the architecture at startup
with its one line (what is missing is named; nothing loaded); ``fail`` with the first
differing token or the run's last lines otherwise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from sglang_fl.bundles import PlatformBundle
from sglang_fl.config import ENV
from sglang_fl.conformance.report import Check, Status
from sglang_fl.conformance.serving import (
    RunResult,
    RunSpec,
    failed_run,
    first_mismatch,
    run_engine,
)
from sglang_fl.errors import ConfigError, one_of

# What `--zoo` alone checks: one model per kind of SGLang path a chip may lack (plain decoder,
# softcapping, MoE routing, MLA with MoE, NewGELU + LayerNorm).
DEFAULT_MODELS = ("llama3", "gemma2", "qwen3-moe", "deepseek-v2", "gpt2")
PART = "zoo"
DTYPE = "float32"
# sglang-fl's startup refusal of an architecture (sglang_fl.platform_base).
REFUSAL = re.compile(r"^sglang-fl: (?P<reason>\S+ cannot be served .*)$", re.MULTILINE)


def zoo_models(spec: str) -> tuple[str, ...]:
    """``--zoo``'s value: ``default``, ``all`` or a comma list of zoo model names."""
    from sglang_fl.models.zoo import zoo_names

    if spec == "default":
        return DEFAULT_MODELS
    if spec == "all":
        return tuple(zoo_names())
    names = tuple(name.strip() for name in spec.split(",") if name.strip())
    unknown = sorted(set(names) - set(zoo_names()))
    if unknown or not names:
        raise ConfigError(
            "--zoo", spec, f"default, all, or a comma list of {one_of(zoo_names())}",
            f"unknown: {', '.join(unknown)}" if unknown else "no model named",
        )  # fmt: skip
    return names


def zoo_checks(bundle: PlatformBundle, names: Sequence[str], workdir: Path) -> list[Check]:
    """One check per zoo model in ``names`` (see the module docstring), in fp32: the zoo's
    greedy margins are sized for it (tests/models/test_zoo.py)."""
    from sglang_fl.models import zoo

    prompts = zoo.prompt_ids()

    def serve(name: str, model: Path, label: str, env: dict[str, str]) -> RunResult:
        spec = RunSpec(f"zoo {name}{label}", None, env)
        return run_engine(spec, bundle, model, prompts, zoo.GREEDY_STEPS, DTYPE, workdir)

    checks = []
    for name in names:
        model = zoo.ensure_zoo_model(name)
        served = serve(name, model, "", {})
        refusal = REFUSAL.search(served.output)
        if served.output_ids is None and refusal:
            checks.append(Check(PART, name, Status.REFUSED, f"refused at startup: {refusal[1]}"))
        elif served.output_ids is None:
            checks.append(Check(PART, name, Status.FAIL, failed_run(served)))
        else:
            hf = zoo.hf_greedy(model, prompts, zoo.GREEDY_STEPS)
            layer2_off = {ENV["oot_enabled"]: "0"}
            own_path = functools.partial(serve, name, model, " Layer 2 off", layer2_off)
            checks.append(_compare(name, served, hf, own_path))
    return checks


def _compare(
    name: str, served: RunResult, hf: list[list[int]], own_path: Callable[[], RunResult]
) -> Check:
    """Served ids against HF's; where they differ, against SGLang's own path (run only then)."""
    dispatched = ", ".join(f"{cls} {'/'.join(sorted(impls))}"
                           for cls, impls in sorted(served.dispatch.items()))  # fmt: skip
    ops = f"; dispatched: {dispatched}" if dispatched else "; no op dispatched"
    diff = first_difference(served.output_ids or [], hf)
    if diff is None:
        return Check(PART, name, Status.PASS, "greedy ids equal HF transformers'" + ops)
    own = own_path()
    if own.output_ids is None:
        return Check(PART, name, Status.FAIL, f"differs from HF at {diff}; SGLang's own path "
                     f"(Layer 2 off) did not complete: {failed_run(own)}")  # fmt: skip
    if own.output_ids == served.output_ids:
        return Check(PART, name, Status.PASS, "greedy ids equal SGLang's own path (Layer 2 "
                     f"off), whose math differs from HF's at {diff}" + ops)  # fmt: skip
    own_diff = first_difference(served.output_ids or [], own.output_ids)
    return Check(PART, name, Status.FAIL, f"differs from HF at {diff} and from SGLang's own "
                 f"path (Layer 2 off) at {own_diff}" + ops)  # fmt: skip


def first_difference(got: list[list[int]], expected: list[list[int]]) -> str | None:
    """Where two runs' greedy ids first differ (``prompt P token T: a vs b``); None if equal."""
    mismatch = first_mismatch(got, expected)
    if mismatch is None:
        return None
    index, at = mismatch
    mine, theirs = got[index], expected[index]
    shown = [ids[at] if at < len(ids) else "end" for ids in (mine, theirs)]
    return f"prompt {index} token {at}: {shown[0]} vs {shown[1]}"
