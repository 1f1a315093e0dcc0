"""`sigd install-service` into a DESTDIR, then used as systemd would use it: the unit verifies
and keeps its exposure, and `sigd check` on the installed config passes as an unprivileged
uid of the service's group (and fails, cleanly, for a uid outside it)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO

PREFIX = "/opt/sigd"
NOBODY = 65534  # uid of nobody, gid of nogroup (Debian)
# systemd starts a service with its own environment, not the caller's (no PYTHONPATH into a checkout)
CLEAN_ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sigd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=240)


def _can_sandbox() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("unshare", "setpriv", "systemd-analyze")):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def destdir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp: the unprivileged uid must be able to walk to the files.
    root = Path(tempfile.mkdtemp(prefix="sigd-destdir-", dir="/tmp"))
    os.chmod(root, 0o755)
    res = _sigd("install-service", "--prefix", PREFIX, "--destdir", str(root), "--reuse-site-packages",
                "--user", "sigd", "--group", "nogroup")
    assert res.returncode == 0, res.stderr[-2000:]
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _in_namespace(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with the staged prefix mounted at its real path, in a private mount namespace."""
    mount = f"mount -t tmpfs tmpfs /opt && mkdir -p {PREFIX} && mount --bind {root}{PREFIX} {PREFIX} && "
    return subprocess.run(["unshare", "-m", "sh", "-c", mount + script], capture_output=True, text=True, timeout=240,
                          cwd="/")  # not the checkout: python -c would import it from the cwd


def test_dry_run_prints_the_plan_and_does_nothing(tmp_path: Path) -> None:
    res = _sigd("install-service", "--prefix", "/opt/sigd-x", "--destdir", str(tmp_path), "--dry-run", "--group", "nogroup")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert all(line.startswith("would install-service: ") for line in lines)
    assert any("-m venv" in line and "/opt/sigd-x/venv" in line for line in lines)
    assert any("pip install" in line for line in lines) and any("sigd.service" in line for line in lines)
    assert list(tmp_path.iterdir()) == []
    real = _sigd("install-service", "--dry-run")  # the real thing: accounts and systemd included
    assert "create system group sigd" in real.stdout and "systemctl daemon-reload" in real.stdout


@pytest.mark.parametrize("flag, name", [("--user", "bad user"), ("--group", "Root"), ("--user", "x" * 40)])
def test_an_impossible_user_or_group_is_refused_before_any_step(flag: str, name: str, tmp_path: Path) -> None:
    res = _sigd("install-service", "--destdir", str(tmp_path), "--dry-run", flag, name)
    assert res.returncode == 1 and f"sigd: {flag} {name!r}: not a system user/group name" in res.stderr
    assert res.stdout == "" and list(tmp_path.iterdir()) == []


def test_installed_files_have_final_paths_and_service_permissions(destdir: Path) -> None:
    etc = destdir / "etc/sigd"
    nogroup = 65534
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750 and etc.stat().st_gid == nogroup
    for name in ("config.toml", "env"):
        st = (etc / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, nogroup), name
    cfg = tomllib.loads((etc / "config.toml").read_text())
    assert cfg["store"]["path"] == "/var/lib/sigd/sigd.sqlite"
    assert cfg["retrain"]["artifacts_dir"] == "/var/lib/sigd/models"
    for name, path in cfg["models"]["paths"].items():
        assert path.startswith(f"{PREFIX}/venv/lib/") and path.endswith(f"/models/artifacts/{name}")
        assert (destdir / path.lstrip("/") / "artifact.json").is_file()  # shipped artifacts installed
    tape = cfg["local_exchange"].get("tape", "")  # "" = the bundled tape, found from the package
    assert not tape or (tape.startswith(f"{PREFIX}/venv/lib/") and (destdir / tape.lstrip("/")).is_dir())
    unit = (destdir / "etc/systemd/system/sigd.service").read_text()
    assert f"ExecStart={PREFIX}/venv/bin/sigd run -c /etc/sigd/config.toml" in unit
    assert "User=sigd" in unit and "Group=nogroup" in unit
    # Scripts name the final interpreter, not the staging directory; the package is a copy, not editable.
    assert (destdir / "opt/sigd/venv/bin/sigd").read_text().startswith(f"#!{PREFIX}/venv/bin/python")
    assert str(destdir) not in (destdir / "opt/sigd/venv/bin/sigd").read_text()
    assert not list((destdir / "opt/sigd/venv/lib").glob("python3*/site-packages/__editable__*"))
    assert (destdir / "opt/sigd/README.md").is_file()
    # every package the run path imports is installed (pipeline/ holds the Predictor)
    assert list((destdir / "opt/sigd/venv/lib").glob("python3*/site-packages/pipeline/predictor.py"))


@pytest.mark.skipif(not _can_sandbox(), reason="needs root, unshare -m, setpriv and systemd-analyze")
def test_installed_service_verifies_and_checks_as_unprivileged_uid(destdir: Path) -> None:
    unit = destdir / "etc/systemd/system/sigd.service"
    cfg = destdir / "etc/sigd/config.toml"
    as_nobody = f"{CLEAN_ENV} setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups"
    res = _in_namespace(destdir, f"""
        systemd-analyze verify --man=no {unit} && echo VERIFY_OK
        systemd-analyze security --offline=true {unit} | tail -1
        {as_nobody} {PREFIX}/venv/bin/sigd check -c {cfg}; echo CHECK_RC=$?
        {as_nobody} {PREFIX}/venv/bin/python -c 'import daemon; print("FROM", daemon.__file__)'
        {CLEAN_ENV} setpriv --reuid {NOBODY} --regid 4242 --clear-groups {PREFIX}/venv/bin/sigd check -c {cfg}; echo OTHER_RC=$?
    """)
    out = res.stdout + res.stderr
    assert "VERIFY_OK" in out, out
    exposure = float(out.split("Overall exposure level for sigd.service:")[1].split()[0])
    assert exposure <= 1.7, out
    assert f"sigd check: {cfg}: ok" in out and "CHECK_RC=0" in out, out
    assert f"FROM {PREFIX}/venv/lib/" in out  # the installed copy, not the checkout
    # Outside the service's group the config is unreadable: a one-line error, exit 2.
    assert "OTHER_RC=2" in out and f"{cfg}: cannot read the config file: Permission denied" in out, out


def test_reinstall_keeps_edited_config_and_uninstall(tmp_path: Path) -> None:
    root = tmp_path / "root"
    args = ("--prefix", PREFIX, "--destdir", str(root), "--reuse-site-packages", "--user", "sigd", "--group", "nogroup")
    etc = root / "etc/sigd"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text("# mine\n")
    (etc / "env").write_text("SIGD_API_TOKEN=x\n")
    assert _sigd("install-service", *args).returncode == 0
    assert (etc / "config.toml").read_text() == "# mine\n" and (etc / "env").read_text() == "SIGD_API_TOKEN=x\n"
    assert (root / "opt/sigd/venv/bin/sigd").is_file()
    plan = _sigd("uninstall-service", *args[:4], "--dry-run")
    assert "would uninstall-service: rm -rf" in plan.stdout and (root / "opt/sigd").is_dir()
    assert _sigd("uninstall-service", *args[:4]).returncode == 0
    assert not (root / "opt/sigd").exists() and not (root / "etc/systemd/system/sigd.service").exists()
    assert (etc / "config.toml").exists()  # config and secrets stay without --purge
    assert _sigd("uninstall-service", *args[:4], "--purge").returncode == 0
    assert not etc.exists()


@pytest.mark.skipif(not _can_sandbox() or shutil.which("ip") is None, reason="needs root, unshare -mn, setpriv, ip")
def test_installed_daemon_really_starts_as_the_unprivileged_uid(destdir: Path) -> None:
    # What systemd would do, without systemd: the installed sigd run, as uid 65534, in its own
    # network namespace (the shipped ports are fixed), with /var/lib/sigd a fresh directory
    # that only this uid may write (StateDirectory=), until it reports ready; then SIGTERM.
    cfg = destdir / "etc/sigd/config.toml"
    script = (f"ip link set lo up && mount -t tmpfs tmpfs /opt && mkdir -p {PREFIX} && "
              f"mount --bind {destdir}{PREFIX} {PREFIX} && mount -t tmpfs tmpfs /var/lib && "
              f"mkdir -m 0750 /var/lib/sigd && chown {NOBODY}:{NOBODY} /var/lib/sigd && cd /var/lib/sigd && "
              f"exec setpriv --reuid {NOBODY} --regid {NOBODY} --clear-groups {PREFIX}/venv/bin/sigd run -c {cfg}")
    proc = subprocess.Popen(["unshare", "-mn", "sh", "-c", script], cwd="/", stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()  # drained all along: a full pipe would block the daemon's logging
    try:
        deadline = time.monotonic() + 180
        while not any('"daemon_ready"' in line for line in list(lines)) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines[-30:])
            time.sleep(0.2)
        assert any('"daemon_ready"' in line for line in list(lines)), "".join(lines[-30:])
        proc.terminate()
        assert proc.wait(60) == 0, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_make_install_service_is_the_same_command(tmp_path: Path) -> None:
    res = subprocess.run(["make", "-s", "install-service", f"DESTDIR={tmp_path}", "PREFIX=/opt/sigd-m",
                          f"PYTHON={sys.executable}", "INSTALL_ARGS=--dry-run --group nogroup"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"would install-service: install -m 0644 systemd/sigd.service {tmp_path}/etc/systemd/system/sigd.service" \
        in res.stdout and "/opt/sigd-m/venv" in res.stdout and "torch==" in res.stdout
    assert list(tmp_path.iterdir()) == []
