"""The import graph of replab's top-level modules and subpackages has no cycles (every import counts,
module-level and inside functions), so each layer can be read, tested and replaced on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import replab

ROOT = Path(replab.__file__).parent


def _unit(module: str) -> str | None:
    """``replab.models.forward`` -> ``models``; ``replab`` itself -> ``None`` (the lazy facade)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "replab" and len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports (``from replab import plugins`` counts as ``plugins``)."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("").parts
        if rel == ("__init__",):
            continue
        src = rel[0]
        targets = graph.setdefault(src, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + ([f"replab.{a.name}" for a in node.names] if node.module == "replab" else [])
            else:
                continue
            targets.update(u for u in map(_unit, names) if u and u != src)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of units (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_replab_has_no_import_cycles():
    graph = import_graph()
    assert {"models", "datasets", "runs", "world", "probes", "saes"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_base_layers_know_nothing_of_the_world():
    graph = import_graph()
    for base in ("datasets", "models", "runs", "errors", "dtypes", "plugins", "identity"):
        assert "world" not in graph.get(base, set()), base
