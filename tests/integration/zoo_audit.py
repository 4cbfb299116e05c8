"""The zoo audit: every zoo model served by real SGLang on the CPU platform, against HF greedy.

For each zoo model (``sglang_fl.models.zoo``) on the installed SGLang release, this serves the
model with ``sglang.Engine`` through sglang-fl's CPU platform (fp32, the default sglang-fl
configuration: every dispatched op on the ``reference`` backend), generates 16 greedy tokens
for each of ``zoo.PROMPTS`` and compares the ids with HF transformers in fp32 (a full forward
per step). Each model gets one of:

- ``ok``: the ids equal HF's;
- ``ids differ``: the first differing prompt and position, and the same run with Layer 2 off
  (``SGLANG_FL_OOT_ENABLED=0``): if SGLang's own path differs from HF the same way, SGLang's
  math differs from HF's; if it matches HF, sglang-fl's dispatch is at fault;
- ``crash``: the exception and the SGLang frames it came through (``file:line in function``),
  plus whether SGLang's own path (Layer 2 off) crashes the same way;
- ``refused``: sglang-fl refused the architecture at startup, before anything loaded (its
  one line names the architecture and what is missing).

Also recorded: the fused-op classes the model reaches and which of them stay on SGLang's own
path (sglang-fl's "Layer 2: <Model> reaches the fused ops ..." line; releases before 0.5.22
get it through ``zoo_report_plugin``) and the dispatch-log lines.

Run it with the python of an environment made by ``ci/install-env.sh`` (one SGLang release
each; engines run one at a time, each in its own process)::

    VENV/bin/python tests/integration/zoo_audit.py [--models a,b] [--json OUT.json]
    python tests/integration/zoo_audit.py --table A.json B.json   # one table, several releases
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: the helpers beside it

from integration_helpers import (
    clean_env,
    dispatch_lines,
    hf_greedy,
    run_engine,
    with_pythonpath,
)
from zoo_report_plugin import install_report_plugin

from sglang_fl.conformance.serving import first_mismatch
from sglang_fl.conformance.zoo import REFUSAL  # sglang-fl's startup refusal of a model
from sglang_fl.models import zoo

ENGINE_TIMEOUT = 600.0
REPORT_LINE = re.compile(
    r"Layer 2: (?P<model>\S+) reaches the fused ops (?P<reached>.*?); "
    r"on SGLang's own path: (?P<own>.*)$",
    re.MULTILINE,
)
# SGLang's KV-cache sizing failing because host memory shrank while it profiled (the CPU
# platform's memory is the host's, shared with every other process).
SHARED_MEMORY_FAILURE = "leave no GPU memory for the KV cache"
FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


@dataclass
class Crash:
    """Where a run failed: the exception line and the frames of its traceback that matter."""

    exception: str
    sglang_frames: list[str] = field(default_factory=list)  # innermost last
    innermost: str = ""


@dataclass
class Run:
    """One engine run: its ids (None if it failed), the fused-op report and its crash."""

    ids: list[list[int]] | None
    sglang_model: str = ""  # the class SGLang built ("TransformersForCausalLM": its fallback)
    reached: list[str] = field(default_factory=list)
    own_path: list[str] = field(default_factory=list)
    dispatch: list[str] = field(default_factory=list)
    crash: Crash | None = None
    refusal: str = ""  # sglang-fl's startup refusal, if it refused the model
    seconds: float = 0.0


@dataclass
class Finding:
    """A zoo model's audit result on one SGLang release."""

    model: str
    architecture: str
    sglang: str
    status: str
    first_diff: dict[str, int] | None = None
    plugin: Run | None = None
    layer2_off: Run | None = None
    layer2_off_verdict: str = ""
    import_error: Crash | None = None  # SGLang's module for the architecture fails to import


def _frame_text(file: str, line: str, func: str) -> str:
    marker = "site-packages/"
    short = file.split(marker, 1)[1] if marker in file else file
    return f"{short}:{line} in {func}"


def parse_crash(output: str) -> Crash | None:
    """The first traceback that passes through SGLang (the scheduler's own failure comes
    before the launcher's consequences), else the last one; None if there is none."""
    blocks = _tracebacks(output)
    if not blocks:
        return None
    chosen = next((b for b in blocks if any("/sglang/" in f[0] for f in b[0])), blocks[-1])
    frames, exception = chosen
    sglang = [_frame_text(*f) for f in frames if "/sglang/" in f[0]]
    innermost = _frame_text(*frames[-1]) if frames else ""
    return Crash(exception=exception, sglang_frames=sglang[-6:], innermost=innermost)


def _tracebacks(output: str) -> list[tuple[list[tuple[str, str, str]], str]]:
    """(frames, exception line) of every traceback block in ``output``."""
    blocks = []
    lines = output.splitlines()
    for start, text in enumerate(lines):
        if not text.rstrip().endswith("Traceback (most recent call last):"):
            continue
        frames, exception = [], ""
        for line in lines[start + 1 :]:
            match = FRAME.match(line)
            if match:
                frames.append((match["file"], match["line"], match["func"].strip()))
            elif line.startswith((" ", "\t")) or not line.strip():
                continue
            else:
                exception = line.strip()
                break
        blocks.append((frames, exception))
    return blocks


def _names(listed: str) -> list[str]:
    return [] if listed.strip() == "(none)" else [n.strip() for n in listed.split(",")]


def serve(model_dir: Path, prompts: list[list[int]], env_extra: dict[str, str]) -> Run:
    """One engine run in its own process; run again once if it failed on host memory that
    other processes took while SGLang measured it (a shared machine, not the model)."""
    run = _serve_once(model_dir, prompts, env_extra)
    if run.crash is not None and SHARED_MEMORY_FAILURE in run.crash.exception:
        run = _serve_once(model_dir, prompts, env_extra)
    return run


def _serve_once(model_dir: Path, prompts: list[list[int]], env_extra: dict[str, str]) -> Run:
    """One engine run in its own process, with the report plugin and a dispatch log."""
    with tempfile.TemporaryDirectory(prefix="zoo-audit-") as tmp:
        log = Path(tmp) / "dispatch.log"
        env = clean_env(SGLANG_FL_DISPATCH_LOG=str(log), **env_extra)
        env = with_pythonpath(env, install_report_plugin(Path(tmp) / "plugin"))
        start = time.monotonic()
        try:
            result, output = run_engine(model_dir, prompts, zoo.GREEDY_STEPS, env,
                                        timeout=ENGINE_TIMEOUT)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            result, output = None, _text(exc.stdout) + _text(exc.stderr)
            output += f"\nTimeoutExpired: no result after {ENGINE_TIMEOUT:.0f} s\n"
        run = Run(ids=result["output_ids"] if result else None,
                  seconds=round(time.monotonic() - start, 1))  # fmt: skip
        run.dispatch = sorted(dispatch_lines(log))
    report = REPORT_LINE.search(output)
    if report:
        run.sglang_model = report["model"]
        run.reached, run.own_path = _names(report["reached"]), _names(report["own"])
    refusal = REFUSAL.search(output)
    if run.ids is None and refusal:
        run.refusal = refusal["reason"]
    elif run.ids is None:
        run.crash = parse_crash(output) or Crash(exception=_last_line(output))
    return run


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _last_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def first_diff(expected: list[list[int]], got: list[list[int]]) -> dict[str, int] | None:
    """The first (prompt, position) where ``got`` differs from ``expected``; None if equal
    (tokens -1 where one run ended early)."""
    mismatch = first_mismatch(expected, got)
    if mismatch is None:
        return None
    prompt, pos = mismatch
    want, have = expected[prompt], got[prompt]
    if pos >= min(len(want), len(have)):
        return {"prompt": prompt, "pos": pos, "hf": -1, "sglang": -1}
    return {"prompt": prompt, "pos": pos, "hf": want[pos], "sglang": have[pos]}


def audit_model(name: str, sglang_version: str) -> Finding:
    """Serve one zoo model with the plugin's defaults; on a failure, also with Layer 2 off."""
    model_dir = zoo.ensure_zoo_model(name)
    prompts = zoo_prompt_ids(model_dir)
    expected = hf_greedy(model_dir, prompts, zoo.GREEDY_STEPS, attn_implementation="eager")
    arch = zoo.model_config(name)["architectures"][0]
    plugin = serve(model_dir, prompts, {})
    finding = Finding(name, arch, sglang_version, "ok", plugin=plugin)
    if plugin.sglang_model != arch:
        finding.import_error = model_import_error(arch)
    if plugin.refusal:
        finding.status = "refused"  # at startup, whatever Layer 2 does: nothing more to run
        return finding
    if plugin.ids is None:
        finding.status = "crash"
    elif plugin.ids != expected:
        finding.status = "ids differ"
        finding.first_diff = first_diff(expected, plugin.ids)
    if finding.status != "ok":
        off = serve(model_dir, prompts, {"SGLANG_FL_OOT_ENABLED": "0"})
        finding.layer2_off = off
        finding.layer2_off_verdict = _off_verdict(off, plugin, expected)
    return finding


def model_import_error(arch: str) -> Crash | None:
    """Why SGLang did not build its own class for ``arch``: importing the module that defines
    it fails (SGLang logs "Ignore import error" and falls back to its Transformers backend).
    None if the module imports or no module defines the class."""
    import sglang

    models = Path(sglang.__file__).parent / "srt" / "models"
    pattern = re.compile(rf"^class {re.escape(arch)}\(", re.MULTILINE)
    for path in sorted(models.glob("*.py")):
        if pattern.search(path.read_text(encoding="utf-8")):
            code = f"import sglang.srt.models.{path.stem}"
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=ENGINE_TIMEOUT)  # fmt: skip
            return parse_crash(proc.stderr) if proc.returncode else None
    return None


def _off_verdict(off: Run, plugin: Run, expected: list[list[int]]) -> str:
    if off.ids is None:
        same = plugin.crash is not None and off.crash is not None
        same = same and off.crash.exception == plugin.crash.exception
        return "crashes the same way" if same else "crashes differently"
    if off.ids == expected:
        return "matches HF"
    if off.ids == plugin.ids:
        return "differs from HF the same way"
    return "differs from HF differently"


def zoo_prompt_ids(model_dir: Path) -> list[list[int]]:
    """``zoo.PROMPTS`` in the zoo's shared tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return [tokenizer.encode(text) for text in zoo.PROMPTS]


def _sglang_version() -> str:
    from importlib.metadata import version

    return version("sglang")


def markdown(findings: list[dict[str, Any]]) -> str:
    """One table row per model and release: status, classes reached, and what failed."""
    rows = ["| model | SGLang | status | fused ops reached (own path in *italics*) | detail |",
            "|---|---|---|---|---|"]  # fmt: skip
    for f in findings:
        plugin = f["plugin"] or {}
        own = set(plugin.get("own_path", []))
        reached = ", ".join(f"*{c}*" if c in own else c for c in plugin.get("reached", []))
        rows.append(f"| {f['model']} | {f['sglang']} | {f['status']} | {reached or '?'} | "
                    f"{_detail(f)} |")  # fmt: skip
    return "\n".join(rows)


def _detail(f: dict[str, Any]) -> str:
    parts = []
    if f.get("first_diff"):
        d = f["first_diff"]
        parts.append(f"prompt {d['prompt']} pos {d['pos']}: HF {d['hf']}, SGLang {d['sglang']}")
    plugin = f.get("plugin") or {}
    if plugin.get("sglang_model") and plugin["sglang_model"] != f["architecture"]:
        parts.append(f"SGLang built {plugin['sglang_model']}")
    if f.get("import_error"):
        error = f["import_error"]
        parts.append(f"its module fails to import: `{error['exception'][:120]}` "
                     f"(via `{' → '.join(error['sglang_frames'][-3:])}`)")  # fmt: skip
    if plugin.get("refusal"):
        parts.append(f"refused at startup: `{plugin['refusal']}`")
    crash = plugin.get("crash")
    if crash:
        where = crash["sglang_frames"][-1] if crash["sglang_frames"] else crash["innermost"]
        parts.append(f"`{crash['exception'][:160]}` at `{where}`")
    if f.get("layer2_off_verdict"):
        parts.append(f"Layer 2 off: {f['layer2_off_verdict']}")
    return "; ".join(parts).replace("|", "\\|")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(zoo.zoo_names()))
    parser.add_argument("--json", type=Path, help="write the findings here")
    parser.add_argument("--table", nargs="+", type=Path, help="print one table of these JSONs")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown([f for path in args.table for f in json.loads(path.read_text())]))
        return 0
    version, findings = _sglang_version(), []
    for name in args.models.split(","):
        finding = asdict(audit_model(name, version))
        findings.append(finding)
        print(json.dumps({"model": name, "status": finding["status"],
                          "detail": _detail(finding)}), flush=True)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(findings, indent=2) + "\n")
    print(markdown(findings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
