"""The layering, read from the source: imports flow ui (HTTP only) | control_api -> monitoring -> ml,
and no module of ours imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("control_api", "monitoring", "ml", "ui")
# what each package may import of ours, itself included
ALLOWED = {"control_api": {"control_api", "monitoring", "ml"}, "monitoring": {"monitoring", "ml"},
           "ml": {"ml"}, "ui": {"ui"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules this file imports, at any depth of the file (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import module` names the module; `from module import function` the module
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            module = name
            while module and module not in known:
                module = module.rpartition(".")[0]
            if module:
                found.add(module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_of(name: str) -> str:
    return name.partition(".")[0]


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_plain_from_and_lazy_imports():
    edges = graph()
    assert "control_api.identity.routing" in edges["control_api.routes.jobs"]
    assert "ml.registry" in edges["control_api.serving"]
    assert len(edges) > 80


def test_no_module_of_ours_imports_itself_back():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_flow_one_way_between_packages():
    wrong = sorted(f"{source} imports {target}" for source, targets in graph().items() for target in targets
                   if package_of(target) not in ALLOWED[package_of(source)])
    assert wrong == []
