"""The structure the code promises: layers that only import downwards, and no import cycles,
deferred (function-level) imports included."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "planetloc"
BASE = {"errors", "atomic", "stable_hash", "yaml_config", "ranking", "devices", "__init__"}
# Which parts of the package each part may import (besides itself and the base modules).
ALLOWED: dict[str, set[str]] = {
    "geo": set(),
    "data": {"geo"},
    "model": {"data", "geo"},
    "index": {"model", "data", "geo"},
    "eval": {"index", "model", "data", "geo"},
    "baselines": {"eval", "model", "data", "geo"},
    "train": {"eval", "index", "model", "data", "geo"},
    "builder": {"data", "geo"},
    "serve": {"index", "model", "data", "geo"},
    "workflows": {"train", "eval", "baselines", "index", "model", "data", "geo", "builder"},
    "cli": {
        "workflows",
        "train",
        "eval",
        "baselines",
        "index",
        "model",
        "data",
        "geo",
        "builder",
        "serve",
    },
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every planetloc module ``path`` imports, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("planetloc")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("planetloc"):
                found.add(name)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "from planetloc.x import y" may name module x.y or an object of x.
            candidate = imported if imported in modules else imported.rsplit(".", 1)[0]
            while candidate not in modules and "." in candidate:
                candidate = candidate.rsplit(".", 1)[0]
            if candidate in modules and candidate != name:
                targets.add(candidate)
        graph[name] = targets
    return graph


def test_every_part_imports_only_the_layers_below_it() -> None:
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        if part in BASE:
            continue
        allowed = ALLOWED[part] | BASE | {part}
        wrong += [f"{module} -> {t}" for t in targets if _part(t) not in allowed]
    assert not wrong, "\n".join(sorted(wrong))


def test_serving_and_indexing_never_import_training_or_evaluation() -> None:
    for module, targets in _graph().items():
        if _part(module) in ("index", "serve"):
            assert not {_part(t) for t in targets} & {"train", "eval", "workflows"}, module


def test_no_import_cycles_deferred_or_not() -> None:
    graph = _graph()
    # Packages import their own __init__ implicitly; only real edges count.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)
