"""systemd/sigd.service: what the service contract needs, checked by parsing, and by
`systemd-analyze verify` where systemd is installed."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNIT = REPO / "systemd" / "sigd.service"


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_unit_declares_the_service_contract() -> None:
    s = _service()
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "on-failure"
    assert s["StateDirectory"] == "sigd" and s["EnvironmentFile"].startswith("/etc/sigd/")
    assert "sigd check" in s["ExecStartPre"] and "sigd run" in s["ExecStart"]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "DynamicUser"):
        assert s[key] == "yes", key
    assert s["ProtectSystem"] == "strict" and "AF_UNIX" in s["RestrictAddressFamilies"]
    # The stop timeout leaves room for the daemon's own bounded shutdown (10 s by default).
    assert int(s["TimeoutStopSec"]) > 10
    # The installer's account reads /etc/sigd (root:sigd 0640); memory is capped with headroom.
    assert s["User"] == "sigd" and s["Group"] == "sigd" and s["ExecStart"].startswith("/opt/sigd/venv/bin/sigd ")
    # Headroom over the measured daemon (~400 MiB) plus a retrain's training (~2.6 GiB, README);
    # a retrain killed at the cap must not stop the daemon.
    limit_mib = int(s["MemoryMax"][:-1]) * {"M": 1, "G": 1024}[s["MemoryMax"][-1]]
    assert limit_mib >= 1.2 * (400 + 2640) and s["OOMPolicy"] == "continue"


def _unit_for_analysis(tmp_path: Path) -> Path:
    # The real paths exist only on an installed host: point the commands at /bin/true.
    unit = tmp_path / "sigd.service"
    unit.write_text(UNIT.read_text().replace("/opt/sigd/venv/bin/sigd", "/bin/true"))
    return unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_security_exposure_stays_at_most_1_7(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_for_analysis(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = float(res.stdout.split("Overall exposure level for sigd.service:")[1].split()[0])
    assert exposure <= 1.7, res.stdout[-3000:]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_no_problem(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(_unit_for_analysis(tmp_path))], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", res.stderr
