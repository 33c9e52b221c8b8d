"""The package's import graph has no cycles.

Every import counts, at module level or inside a function: a lazy import that only breaks a cycle at run time
leaves the two modules depending on each other, so neither can be understood or tested without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("smallgan", "data_tools")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of our packages (a package is its __init__.py)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in `current`."""
    if level == 0:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its file. ``from pkg import sub`` is an edge to the
    submodule ``pkg.sub`` when there is one, else to ``pkg`` (a name ``pkg/__init__.py`` defines or re-exports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                # `import a.b.c` runs a, a.b and a.b.c; the name used is a.b.c (or a with no `as`).
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node.module or "", node.level, name, is_package)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    out.add(sub)
                elif source in modules:
                    out.add(source)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph):
        if state.get(root):
            continue
        path = [root]
        stack = [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
                continue
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_sees_function_level_and_submodule_imports():
    graph = import_graph()
    assert "smallgan.errors" in graph["smallgan.config"]
    assert "smallgan.cli.train" in graph["smallgan.cli"]          # `from smallgan.cli import train`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_bottom_modules_import_nothing_above_them():
    graph = import_graph()
    # Files, offline switch and metric names are used from everywhere, data_tools and the config included.
    assert graph["smallgan.io"] <= {"smallgan.errors"}
    assert graph["smallgan.offline"] == set()
    assert graph["smallgan.metrics.names"] <= {"smallgan.errors"}
    assert graph["smallgan.models.config"] == set()
    # The config sits below the architectures and the registry it validates with: they never import it.
    below_config = [m for m in graph if m.startswith(("smallgan.models", "smallgan.registry"))]
    assert not [m for m in below_config if "smallgan.config" in graph[m]]
