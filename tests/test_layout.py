"""The layout rules of docs/architecture.md, checked on the source: module-level imports form no cycle,
no module is over 350 lines, and bench/ and scripts/ do not import test code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "grin_unlearn"
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports at module level (function-level imports are lazy by
    intent and not counted): ``from .x import y`` counts ``.x``, and ``.x.y`` when ``y`` is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph(folder: str = "src") -> dict[str, set[str]]:
    """The package's module graph (``src``), or that of the scripts of ``bench`` / ``scripts``, which
    import one another by bare name."""
    if folder == "src":
        files = {module_name(path): path for path in (REPO / "src" / PACKAGE).rglob("*.py")}
    else:
        files = {path.stem: path for path in (REPO / folder).glob("*.py")}
    return {name: imported_modules(path, name, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or with a self-loop."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_module_level_imports_form_no_cycle():
    graph = import_graph()
    assert f"{PACKAGE}.evaluation.set_metrics" in graph[f"{PACKAGE}.evaluation.aggregates"]  # the graph is read
    assert cycles(graph) == []
    bench = import_graph("bench")
    assert "memory_model" in bench["gpu_check"]
    assert cycles(bench) == [] and cycles(import_graph("scripts")) == []


def test_no_module_is_over_350_lines():
    too_long = {str(path.relative_to(REPO)): n for folder in ("src", "tests", "bench", "scripts")
                for path in (REPO / folder).rglob("*.py")
                if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}


def test_bench_and_scripts_do_not_import_test_code():
    offenders = []
    for folder in ("bench", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                           else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(REPO)}: {m}" for m in modules if m.split(".")[0] in ("tests", "conftest")]
    assert offenders == []
