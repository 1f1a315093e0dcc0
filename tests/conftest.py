"""Shared fixtures: temporary paths, config files, and tiny builders for real parts."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config file from TOML text and return its path."""

    def _write(text: str, name: str = "config.toml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return p

    return _write


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory):
    """Both models as tiny artifacts trained once per session by the real pipeline (app tests)."""
    from tests.daemon_harness import build_tiny_artifacts

    return build_tiny_artifacts(tmp_path_factory.mktemp("tiny-artifacts"))


@pytest.fixture(autouse=True)
def _fresh_logging():
    """Each test starts and ends with default logging, so no test writes into another's capture."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs, no dashboard) per test session, started only by the tests that use it."""
    import os

    ray = pytest.importorskip("ray")
    from daemon.retrain.runners import init_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only, a throwaway cluster
    init_ray(None, 2)
    yield
    ray.shutdown()
