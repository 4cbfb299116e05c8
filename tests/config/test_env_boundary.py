"""Only ``sglang_fl/config/settings.py`` reads sglang-fl's own variables from the environment.

Everything else gets them through ``Settings`` (and the names through ``ENV``), so there is one
place that parses, validates and layers them, and one place that chooses the platform.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sglang_fl.config.settings import KNOWN_ENV

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "sglang_fl" / "config" / "settings.py"
SOURCES = sorted(
    path
    for folder in ("sglang_fl", "platforms")
    for path in (ROOT / folder).rglob("*.py")
    if path != SETTINGS
)
OUR_PREFIXES = ("SGLANG_FL_", "SGLANG_FLAGGEMS_", "USE_FLAGGEMS")
# Names a module would use to spell one of our variables without a literal.
NAME_CONSTANTS = {"ENV", "CONFIG_ENV", "FLAGCX_ENV", "KNOWN_ENV"}


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _read_keys(tree: ast.AST):
    """The key expression of every environment read: ``os.environ[k]``, ``os.environ.get(k)``,
    ``os.environ.pop(k)``, ``os.getenv(k)``, ``k in os.environ``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_environ(node.value):
                yield node.slice
        elif isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            func = node.func
            from_environ = _is_environ(func.value) and func.attr in ("get", "pop")
            if from_environ or (func.attr == "getenv" and isinstance(func.value, ast.Name)):
                yield node.args[0]
        elif isinstance(node, ast.Compare) and any(isinstance(o, ast.In) for o in node.ops):
            yield from (node.left for c in node.comparators if _is_environ(c))


def _ours(key: ast.AST) -> bool:
    """The key names one of our variables: literally, or through a settings constant."""
    for node in ast.walk(key):
        literal = node.value if isinstance(node, ast.Constant) else None
        if isinstance(literal, str) and (literal in KNOWN_ENV or literal.startswith(OUR_PREFIXES)):
            return True
        if isinstance(node, ast.Name) and node.id in NAME_CONSTANTS:
            return True
    return False


def test_the_check_finds_a_read():
    """The scan itself works: each form of reading one of our variables is caught."""
    code = (
        'os.environ.get(ENV["platform"])\nos.environ["SGLANG_FL_PREFER"]\n'
        'os.getenv("USE_FLAGGEMS")\n"SGLANG_FLAGGEMS_RECORD" in os.environ\n'
        "environ.pop(FLAGCX_ENV)\nos.environ.get(THREADS_BIND_ENV)\n"
    )
    assert [_ours(key) for key in _read_keys(ast.parse(code))] == [True] * 5 + [False]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_but_settings_reads_our_variables(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    reads = [ast.unparse(key) for key in _read_keys(tree) if _ours(key)]
    assert not reads, f"{path.relative_to(ROOT)} reads {reads} from the environment"
