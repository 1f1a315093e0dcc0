"""One local Ray (2 CPUs, no dashboard) per test session, started only by the tests that use it."""

from __future__ import annotations

import os
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """`ray.init` once for the session; shut down at its end."""
    ray = pytest.importorskip("ray")
    from daemon.retrain.runners import init_ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only, a throwaway cluster
    init_ray(None, 2)
    yield
    ray.shutdown()
