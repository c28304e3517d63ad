"""Import contracts: the package's layers point one way and no module imports itself back.

Every ``import`` in ``upscaler/`` and ``training/`` (module level and inside functions; type-only
imports under ``if TYPE_CHECKING:`` left out) is read from the source with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("upscaler", "training")

# Which layers each layer may import (its own included). Top-level modules of upscaler are
# the application layer (cli, runner, worklist, rules, process...) and may import everything.
ALLOWED = {
    "upscaler.formats": {"upscaler.formats", "upscaler.options", "upscaler.atomic"},
    "upscaler.texture": {"upscaler.texture", "upscaler.formats", "upscaler.options"},
    "upscaler.models": {
        "upscaler.models",
        "upscaler.atomic",
        "upscaler.options",
        "upscaler.schema",
    },
    "upscaler.engine": {
        "upscaler.engine",
        "upscaler.models",
        "upscaler.texture",
        "upscaler.options",
    },
    "upscaler.options": set(),
    "upscaler.schema": set(),  # the strict dict -> dataclass loader: stdlib only
}
TRAINING_ONLY = ("training", "lpips", "kornia", "torchvision", "tensorboard")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Modules imported by ``path`` (absolute names; ``from pkg import mod`` names ``pkg.mod``
    when that is a module of ours)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


MODULES = {
    _module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
}
GRAPH = {name: {m for m in _imports(path) if m in MODULES} for name, path in MODULES.items()}
ALL_IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    for layer in ALLOWED:
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def test_upscaler_imports_are_absolute_so_the_layers_can_be_read() -> None:
    relative = [
        name
        for name, path in MODULES.items()
        if name.startswith("upscaler")
        and any(
            isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert relative == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("upscaler")))
def test_upscaler_never_imports_training_or_its_dependencies(module: str) -> None:
    bad = [m for m in ALL_IMPORTS[module] if m.split(".")[0] in TRAINING_ONLY]
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m)))
def test_layers_point_one_way(module: str) -> None:
    layer = _layer(module)
    assert layer is not None
    outside = sorted(
        m
        for m in GRAPH[module]
        if m.startswith("upscaler") and (_layer(m) or m) not in ALLOWED[layer]
    )
    # a layer's package ``__init__`` (e.g. ``upscaler``) counts as the application layer
    outside = [m for m in outside if m != "upscaler"]
    assert outside == [], f"{module} ({layer}) imports {outside}"


def test_there_is_no_import_cycle() -> None:
    # relative imports inside training/ resolve against the package
    graph = {name: set(edges) for name, edges in GRAPH.items()}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                target = f"{package}.{node.module}"
                if target in MODULES:
                    graph[name].add(target)
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend([*stack[stack.index(nxt) :], nxt])
                return True
            if nxt not in state and visit(nxt, [*stack, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert cycle == [], " -> ".join(cycle)
