"""The shape of the code: no import circles, and only the commands print (issue 17).

Both read the source with `ast`; nothing is imported. Each allow-list below names what is left
today and may only shrink: an entry that no longer applies fails the test too, so whoever
removes a circle or a print also removes its entry.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("daemon", "pipeline", "models", "strategies")

# Circles still there, each owned by another change of this session. Do not add to this list.
ALLOWED_CIRCLES = {
    frozenset({"daemon.research.backtest", "daemon.research.walkforward"}),
}

# The command line's front: argparse's and the refused command's one line on stderr.
PRINTS_BY_DESIGN = {"daemon/service/cli.py"}
# Library modules that still print: commands not yet moved to daemon/commands/. Do not add to this list.
ALLOWED_PRINTS = {
    "daemon/research/ablation.py",
    "daemon/research/backtest.py",
    "daemon/research/calibration.py",
    "daemon/research/hourly.py",
    "daemon/research/leaderboard.py",
    "daemon/research/tune.py",
    "daemon/research/walkforward.py",
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file. An import inside a function counts:
    a circle broken only by deferring one side is still a circle."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in modules:  # `import a.b.c` names a.b.c, or a.b if c is a name
                    target = target.rpartition(".")[0]
                found.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                # `from a.b import c`: the module a.b.c when there is one, else a name of a.b
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            step = next(edges, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph[step]))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_circle_finder_finds_a_circle_and_only_the_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert circles(graph) == [frozenset({"a", "b", "c"})]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    graph = import_graph()
    assert "daemon.retrain.scoring" in graph["daemon.retrain.jobs"]  # module level
    assert "pipeline.train" in graph["daemon.retrain.jobs"]  # inside a function (torch: for cold start)
    assert "daemon.localexchange.server" in graph["daemon.localexchange"]  # the package's __init__


def test_no_import_circles_beyond_the_allowed_ones() -> None:
    found = set(circles(import_graph()))
    new = [sorted(c) for c in found - ALLOWED_CIRCLES]
    assert not new, f"import circles: {new} (put the shared types in a module of their own; see docs/development)"
    gone = [sorted(c) for c in ALLOWED_CIRCLES - found]
    assert not gone, f"these circles are gone: remove them from ALLOWED_CIRCLES in {__file__}: {gone}"


def _prints(path: Path) -> list[int]:
    """Lines of the file that call print()."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    )


def test_only_the_commands_print() -> None:
    printing = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("daemon/commands/") or rel in PRINTS_BY_DESIGN:
                continue
            if lines := _prints(path):
                printing[rel] = lines
    new = {rel: lines for rel, lines in printing.items() if rel not in ALLOWED_PRINTS}
    assert not new, f"library modules return values and log; move the printing to daemon/commands/: {new}"
    gone = sorted(ALLOWED_PRINTS - set(printing))
    assert not gone, f"these no longer print: remove them from ALLOWED_PRINTS in {__file__}: {gone}"


def test_the_print_finder_sees_a_print_call_and_not_a_string() -> None:
    assert _prints(REPO / "daemon" / "commands" / "check.py")
    assert not _prints(REPO / "daemon" / "service" / "install.py")  # a script in a string, run by another python
