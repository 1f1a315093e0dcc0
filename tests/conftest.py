"""Shared fixtures: temporary paths, config files, and tiny builders for real parts.

The suite runs in parallel (pytest-xdist, `make test`): what several tests share and is dear
to build (tiny trained models, tapes) is built once per run by the first worker that asks,
under a lock in the run's base temporary directory (`shared_dir`), and reused by the others.
Tests that must share one process (one local Ray; a module-scoped trained model) are kept on
one worker by an `xdist_group` added here."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

try:
    from _pytest.nodeid import NodeId
except ImportError:  # pytest < 9.2: xdist's own suffix works
    NodeId = None

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# The session's TempPathFactory, for builders that tests call as plain functions (tiny_world).
_SESSION: dict[str, pytest.TempPathFactory] = {}


def shared_dir(name: str, build: Callable[[Path], object]) -> Path | None:
    """`name` under the run's base temporary directory, built by `build(path)` once per test
    run and shared by every xdist worker (the first one builds it under a file lock, the others
    wait and reuse it). None outside a pytest session."""
    factory = _SESSION.get("tmp")
    if factory is None:
        return None
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the controller's base temp: every worker's basetemp is a child of it
    target, done = base / name, base / f"{name}.done"
    with (base / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)  # a half-built one from a worker that died
            target.mkdir(parents=True)
            build(target)
            done.touch()
    return target


@pytest.fixture(scope="session", autouse=True)
def _session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _SESSION["tmp"] = tmp_path_factory
    yield
    _SESSION.clear()


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config file from TOML text and return its path."""

    def _write(text: str, name: str = "config.toml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write


@pytest.fixture(scope="session")
def tiny_artifacts() -> dict[str, Path]:
    """Both models as tiny artifacts trained once per test run by the real pipeline (app tests)."""
    from tests.daemon_harness import build_tiny_artifacts

    def build(root: Path) -> None:
        dirs = build_tiny_artifacts(root)
        (root / "index.json").write_text(json.dumps({k: str(v) for k, v in dirs.items()}))

    root = shared_dir("tiny-artifacts", build)
    assert root is not None
    return {k: Path(v) for k, v in json.loads((root / "index.json").read_text()).items()}


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Each test starts and ends with default logging, so no test writes into another's capture."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs, no dashboard) per test session, started only by the tests that use it
    (under xdist they all run on one worker: the `ray` group below)."""
    ray = pytest.importorskip("ray")
    from daemon.retrain.runners import init_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only, a throwaway cluster
    init_ray(None, 2)
    yield
    ray.shutdown()


# Test modules that start a Ray of their own (a two-node cluster the test shuts down; `sigd tune`
# subprocesses whose trial workers a test of tests/retrain/test_ray.py may kill by their title):
# they run on the `ray` worker, one at a time, never beside another test's Ray.
RAY_MODULES = ("tests/research/test_calibration_ray.py", "tests/retrain/test_tune_resume.py")


def _xdist_group(item: pytest.Item) -> str | None:
    """The worker group of a test under `--dist loadgroup`: every test of the session's local
    Ray, and of RAY_MODULES, on one worker (one Ray at a time, the session's started once); the
    tests of a module whose own module-scoped fixture they use on one worker (those fixtures
    train models: built once, not once per worker)."""
    names = getattr(item, "fixturenames", ())
    if "ray_local" in names or item.nodeid.split("::")[0] in RAY_MODULES:
        return "ray"
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    module = getattr(item, "module", None)
    for name in names:
        for fixturedef in defs.get(name, ()):
            if fixturedef.scope == "module" and module is not None and fixturedef.func.__module__ == module.__name__:
                return item.nodeid.split("::")[0]
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns xdist_group marks into the nodeid suffix
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers under --dist loadgroup
        return
    for item in items:
        group = _xdist_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
            # xdist's scheduler reads the group from a "@group" suffix of the nodeid; xdist 3.8
            # writes it to `_nodeid`, which pytest 9.2 no longer reads (the id is `_id`).
            if NodeId is not None and isinstance(getattr(item, "_id", None), NodeId):
                item._id = NodeId.parse(f"{item.nodeid}@{group}")
