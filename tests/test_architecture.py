"""Dependencies point one way: bot -> core, never back."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
FORBIDDEN = ("bot", "discord", "slack_bolt", "slack_sdk")


def test_core_never_imports_adapters() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_no_print_in_core() -> None:
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id == "print"]
        assert not calls, f"print() in {path}"


def _imports(path: Path, package: str) -> set[str]:
    """Every ``core``/``bot`` module a file imports, at any depth (lazy imports count: a cycle
    hidden in a function is still a cycle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}"
            else:
                mod = node.module
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("core", "bot")}


def _graph() -> dict[str, set[str]]:
    root = CORE.parent
    modules: dict[str, Path] = {}
    for top in ("core", "bot"):
        for path in (root / top).rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package's __init__ re-exporting its own modules is not a cycle of meaning.
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


#: Lower layers never import higher ones: media and models know nothing of storage, storage
#: nothing of ingestion or retrieval, and none of them of the service on top.
LAYERS = [
    {"core.errors", "core.types", "core.config", "core.protocols", "core.textnorm"},
    {"core.media", "core.models"},
    {"core.library"},
    {"core.components", "core.ingest", "core.enrich", "core.retrieve", "core.answer",
     "core.maintenance", "core.migrate", "core.ratelimit", "core.admission",
     "core.metrics"},
    {"core.service", "core.evaluate"},  # evaluate drives the service
    {"core.app"},
]


def _layer(module: str) -> int | None:
    for n, names in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in names):
            return n
    return None


def test_layers_point_down() -> None:
    bad = []
    for name, deps in _graph().items():
        mine = _layer(name)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                bad.append(f"{name} -> {dep}")
    assert not bad, bad
