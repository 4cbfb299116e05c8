"""The package's layering, read from the source with ``ast``: no sglang_fl module is imported.

Every import of an sglang_fl module counts: at module level or inside a function, absolute or
relative, under ``if TYPE_CHECKING:`` too (a type an annotation names is still a dependency).
The rules:

(a) no import cycle between sglang_fl modules at module level (what runs at import time);
(b) every import points down (or sideways, within one layer) in ``LAYERS``, the order
    docs/architecture.md ("Layers") writes down;
(c) the three plugin layers (ATen -> FlagGems, fused-op dispatch, distributed) import nothing
    of each other: they meet only where they are installed (``plugin``, ``platform_base``).

A new module must be given its layer here (and in the docs) before this passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "sglang_fl"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# Bottom to top. An entry names a module or a package (and so everything under it); the most
# specific entry places a module. The package's own __init__ is not in a layer: it must import
# nothing of sglang_fl (checked below).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # imports nothing of sglang-fl but each other: errors, the static op catalogue and kernel
    # contracts, the backend interface, FlagGems' import state, the ATen trace recorder, the
    # embedded model generator
    ("foundation", ("sglang_fl.errors", "sglang_fl.ops.catalog", "sglang_fl.ops.params",
                    "sglang_fl.dispatch.backend", "sglang_fl.flaggems", "sglang_fl.aten_trace",
                    "sglang_fl.models")),
    ("bundles", ("sglang_fl.bundles",)),
    ("config", ("sglang_fl.config", "sglang_fl.logs")),
    ("compat", ("sglang_fl.compat",)),
    # Layers 1-3 of the plugin (rule (c)), with the SGLang bridges and the per-op report
    ("plugin layers", ("sglang_fl.aten", "sglang_fl.ops", "sglang_fl.dispatch",
                       "sglang_fl.backends", "sglang_fl.distributed")),
    ("platform_base", ("sglang_fl.platform_base",)),
    ("plugin", ("sglang_fl.plugin",)),
    ("commands", ("sglang_fl.cli_common", "sglang_fl.bench", "sglang_fl.conformance",
                  "sglang_fl.doctor")),
    ("cli", ("sglang_fl.cli",)),
)  # fmt: skip

PLUGIN_LAYERS: Mapping[str, tuple[str, ...]] = {
    "Layer 1 (ATen -> FlagGems)": ("sglang_fl.aten",),
    "Layer 2 (fused-op dispatch)": ("sglang_fl.dispatch", "sglang_fl.backends",
                                    "sglang_fl.ops.bridges"),
    "Layer 3 (distributed)": ("sglang_fl.distributed",),
}  # fmt: skip

# Upward imports that live in modules other branches of the code-health work own, each to be
# fixed there: (importer, imported) -> where and why. Remove an entry once its fix is merged;
# the test fails on a listed edge that is gone as well as on an unlisted one. Empty when this
# test was written: every upward edge then was in a module of the CLI branch, and fixed there.
KNOWN_UPWARD_EDGES: Mapping[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    file: str  # the importer's, relative to the package's parent
    line: int
    module_level: bool  # runs when the importer is imported (not inside a function)

    def __str__(self) -> str:
        where = "module level" if self.module_level else "in a function"
        return f"{self.importer} -> {self.imported} ({self.file}:{self.line}, {where})"


# --------------------------------------------------------------------------- reading the graph


def modules(package_dir: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__) for every module under ``package_dir``."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(package_dir: Path) -> list[Import]:
    """Every import of a module of the package, by every module of it."""
    known = modules(package_dir)
    root = package_dir.name
    found = []
    for name, (path, is_package) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        file = path.relative_to(package_dir.parent).as_posix()
        for node, module_level in _import_nodes(tree.body, module_level=True):
            for target in _targets(node, name, is_package):
                if target == root or target.startswith(root + "."):
                    imported = _known(target, known)
                    found.append(Import(name, imported, file, node.lineno, module_level))
    return found


def _import_nodes(
    nodes: Iterable[ast.AST], module_level: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, module_level
            continue
        inside_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _import_nodes(ast.iter_child_nodes(node), module_level and not inside_function)


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may load: ``from a import b`` is module ``a.b``
    when there is one, else a name defined in ``a`` (resolved against the known modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    return [f"{prefix}.{alias.name}" for alias in node.names]


def _known(target: str, known: Mapping[str, object]) -> str:
    """The module ``target`` loads: itself, or the module ``from`` named (``a.b`` for ``a.b.X``)."""
    if target in known:
        return target
    parent = target.rsplit(".", 1)[0]
    assert parent in known, f"import of {target}: no such module in the package"
    return parent


def cycles(edges: Iterable[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _under(module: str, entry: str) -> bool:
    """``entry`` names ``module`` or a package above it."""
    return module == entry or module.startswith(entry + ".")


def layer_of(module: str) -> int:
    """Index in LAYERS of the most specific entry naming ``module`` or a package above it."""
    matches = [
        (len(entry), position)
        for position, (_, entries) in enumerate(LAYERS)
        for entry in entries
        if _under(module, entry)
    ]
    if not matches:
        raise LookupError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return max(matches)[1]


def plugin_layer_of(module: str) -> str | None:
    for name, entries in PLUGIN_LAYERS.items():
        if any(_under(module, entry) for entry in entries):
            return name
    return None


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return imports(PACKAGE_DIR)


def test_every_module_has_a_layer_and_the_package_root_imports_nothing(graph):
    unplaced = []
    for module in modules(PACKAGE_DIR):
        if module == PACKAGE:
            continue
        try:
            layer_of(module)
        except LookupError as exc:
            unplaced.append(str(exc))
    assert unplaced == []
    assert [str(e) for e in graph if e.importer == PACKAGE] == []


def test_no_import_cycles_at_module_level(graph):
    assert cycles(e for e in graph if e.module_level) == []


def test_every_import_points_down(graph):
    upward = {}
    for edge in graph:
        if layer_of(edge.imported) > layer_of(edge.importer):
            upward[(edge.importer, edge.imported)] = (
                f"{edge} reaches up from {LAYERS[layer_of(edge.importer)][0]} to "
                f"{LAYERS[layer_of(edge.imported)][0]}"
            )
    unexpected = [why for key, why in upward.items() if key not in KNOWN_UPWARD_EDGES]
    fixed = [f"{a} -> {b}" for a, b in KNOWN_UPWARD_EDGES if (a, b) not in upward]
    assert unexpected == [], "upward imports"
    assert fixed == [], "fixed: remove these from KNOWN_UPWARD_EDGES"


def test_the_three_plugin_layers_do_not_import_each_other(graph):
    crossing = [
        f"{edge}: {plugin_layer_of(edge.importer)} -> {plugin_layer_of(edge.imported)}"
        for edge in graph
        if plugin_layer_of(edge.importer)
        and plugin_layer_of(edge.imported)
        and plugin_layer_of(edge.importer) != plugin_layer_of(edge.imported)
    ]
    assert crossing == []


def test_the_edges_the_code_health_issue_removed_stay_removed(graph):
    """Named, so that a failure says which: the conformance suite importing the CLI, the plugin
    importing the benchmarks, Layer 1 asking the flagos backend about FlagGems."""
    removed = (
        ("sglang_fl.conformance", "sglang_fl.cli"),
        ("sglang_fl.plugin", "sglang_fl.bench"),
        ("sglang_fl.aten", "sglang_fl.backends"),
    )
    back = [
        str(edge)
        for edge in graph
        for importer, imported in removed
        if _under(edge.importer, importer) and _under(edge.imported, imported)
    ]
    assert back == []


# --------------------------------------------------------------------------- the reader itself


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_reader_sees_every_form_of_import_and_finds_cycles(tmp_path):
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "from . import a\nimport os\n",
        "pkg/sub/__init__.py": "from typing import TYPE_CHECKING\nfrom .c import VALUE\n"
                               "if TYPE_CHECKING:\n    from pkg import b\n",
        "pkg/sub/c.py": "VALUE = 1\n\ndef later():\n    from ..b import a\n"
                        "\nclass K:\n    from pkg import a as alias\n",
    })  # fmt: skip
    edges = {(e.importer, e.imported, e.module_level) for e in imports(package)}
    assert edges == {
        ("pkg.a", "pkg.b", True),
        ("pkg.b", "pkg.a", True),  # relative, `from . import module`
        ("pkg.sub", "pkg.sub.c", True),  # relative, from a package's __init__
        ("pkg.sub", "pkg.b", True),  # under TYPE_CHECKING
        ("pkg.sub.c", "pkg.b", False),  # `from ..b import name`: the module b, in a function
        ("pkg.sub.c", "pkg.a", True),  # a class body runs at import time
    }
    module_level = [e for e in imports(package) if e.module_level]
    assert cycles(module_level) == [["pkg.a", "pkg.b"]]
    assert cycles(e for e in module_level if e.importer != "pkg.b") == []
