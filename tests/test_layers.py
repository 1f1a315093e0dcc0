"""Who imports whom: the architecture's layering rules, checked by parsing imports."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# daemon/ subsystems and the daemon subsystems each may import. The shared core
# (domain, config, typedtoml, store, log, metrics) is open to every subsystem; `service` is
# the composition root and may import everything.
SHARED = {
    "domain",
    "config",
    "tradingconfig",
    "alertsconfig",
    "typedtoml",
    "store",
    "log",
    "metrics",
    "crashpoints",
    "health",
    "events",
    "ports",
}
SUBSYSTEMS: dict[str, set[str]] = {
    "market": set(),
    "alerts": set(),
    "trading": {"market"},
    "research": {"market", "trading", "retrain"},  # research runs its training as retrain's jobs
    "retrain": set(),
    "localexchange": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(pkg: str) -> list[Path]:
    return sorted((REPO / pkg).rglob("*.py"))


def test_domain_is_stdlib_only() -> None:
    for name in _imports(REPO / "daemon" / "domain.py"):
        assert name.split(".")[0] in {"__future__", "math", "dataclasses", "enum", "typing", "collections"}, name


def test_models_never_import_daemon_internals_or_strategies() -> None:
    # What needs a network and the threshold rule together lives above, in pipeline/.
    for f in _files("models"):
        for name in _imports(f):
            top = name.split(".")[0]
            assert top not in {"strategies", "pipeline"}, f"{f}: {name}"
            assert not (top == "daemon" and name != "daemon.domain"), f"{f}: {name}"


def test_pipeline_uses_only_models_strategies_and_the_domain() -> None:
    for f in _files("pipeline"):
        for name in _imports(f):
            assert not (name.split(".")[0] == "daemon" and name != "daemon.domain"), f"{f}: {name}"


def test_strategies_are_pure() -> None:
    allowed = {
        "__future__",
        "math",
        "dataclasses",
        "enum",
        "typing",
        "collections",
        "numpy",
        "daemon",
        "strategies",
        "statistics",
        "functools",
        "itertools",
        "abc",
    }
    for f in _files("strategies"):
        for name in _imports(f):
            assert name.split(".")[0] in allowed, f"{f}: {name}"
            if name.startswith("daemon"):
                assert name == "daemon.domain", f"{f}: {name}"


def test_only_exchange_module_imports_ccxt() -> None:
    for pkg in ("daemon", "models", "strategies"):
        for f in _files(pkg):
            if f.relative_to(REPO).as_posix() == "daemon/market/exchange.py":
                continue
            for name in _imports(f):
                assert name.split(".")[0] != "ccxt", f"{f} imports ccxt"


def test_local_exchange_imports_nothing_from_the_project() -> None:
    for f in _files("daemon/localexchange"):
        for name in _imports(f):
            top = name.split(".")[0]
            assert top not in {"daemon", "models", "strategies"} or name.startswith("daemon.localexchange"), f"{f}: {name}"


def test_subsystems_import_only_the_layers_below_them() -> None:
    for sub, allowed in SUBSYSTEMS.items():
        for f in _files(f"daemon/{sub}"):
            for name in _imports(f):
                parts = name.split(".")
                if parts[0] != "daemon" or len(parts) < 2:
                    continue
                assert parts[1] in SHARED | allowed | {sub}, f"{f}: {name}"


def test_shared_core_imports_no_subsystem() -> None:
    for mod in SHARED:
        package = REPO / "daemon" / mod  # a shared module may be a package (daemon/store/)
        for path in sorted(package.rglob("*.py")) if package.is_dir() else [REPO / "daemon" / f"{mod}.py"]:
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "daemon" and len(parts) > 1:
                    assert parts[1] in SHARED, f"{path.relative_to(REPO)}: {name}"


def test_only_the_command_line_reaches_the_commands() -> None:
    # daemon/commands/ is the top: its modules import the library, never the other way round
    # (cli.py names them as "module:function" strings; a command may use another's printing).
    for pkg in ("daemon", "pipeline", "models", "strategies"):
        for f in _files(pkg):
            if f.relative_to(REPO).as_posix().startswith("daemon/commands/"):
                continue
            for name in _imports(f):
                assert not name.startswith("daemon.commands"), f"{f}: {name}"
