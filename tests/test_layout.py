"""The layout DESIGN.md promises, checked on the source: each layer imports only the layers
below it, no import cycles (counting imports inside functions), no oversized modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "config", "operators", "connectors", "flows")
# What each top-level package may import from the project (itself always).
ALLOWED = {
    "schemas": set(),
    "config": {"schemas"},
    "operators": {"schemas", "config"},
    "connectors": {"schemas", "config"},
    "flows": {"schemas", "config", "operators", "connectors"},
}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Project modules this file imports anywhere in it; `from pkg import mod` counts as `pkg.mod`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in PACKAGES}
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_layers_below_it(module: str) -> None:
    layer = module.split(".")[0]
    wrong = sorted(i for i in GRAPH[module] if i.split(".")[0] not in ALLOWED[layer] | {layer})
    assert not wrong, f"{module} ({layer}) imports {wrong}; allowed: {sorted(ALLOWED[layer])}"


def test_no_import_cycles() -> None:
    """A package's __init__ re-exporting its own modules is not a cycle; anything else is."""
    def edges(name: str) -> set[str]:
        return {t for t in GRAPH[name] if t in GRAPH and not (MODULES[name].name == "__init__.py"
                                                              and t.startswith(name + "."))}

    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges(name)):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small_enough_to_read(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines; split it by concept"
