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
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

PREFIX = "/opt/sigd"
NOBODY = 65534  # uid of nobody, gid of nogroup (Debian)
# systemd starts a service with its own environment, not the caller's (no PYTHONPATH into a checkout)
CLEAN_ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sigd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", *args], cwd=REPO, capture_output=True, text=True, timeout=240)


def _can_sandbox() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("unshare", "setpriv", "systemd-analyze")):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def destdir() -> Iterator[Path]:
    # Not under pytest's 0700 tmp: the unprivileged uid must be able to walk to the files.
    root = Path(tempfile.mkdtemp(prefix="sigd-destdir-", dir="/tmp"))
    os.chmod(root, 0o755)
    res = _sigd(
        "install-service",
        "--prefix",
        PREFIX,
        "--destdir",
        str(root),
        "--reuse-site-packages",
        "--user",
        "sigd",
        "--group",
        "nogroup",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _in_namespace(root: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with the staged prefix mounted at its real path, in a private mount namespace."""
    mount = f"mount -t tmpfs tmpfs /opt && mkdir -p {PREFIX} && mount --bind {root}{PREFIX} {PREFIX} && "
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", mount + script], capture_output=True, text=True, timeout=240, cwd="/"
    )  # not the checkout: python -c would import it from the cwd


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
    res = _in_namespace(
        destdir,
        f"""
        systemd-analyze verify --man=no {unit} && echo VERIFY_OK
        systemd-analyze security --offline=true {unit} | tail -1
        {as_nobody} {PREFIX}/venv/bin/sigd check -c {cfg}; echo CHECK_RC=$?
        {as_nobody} {PREFIX}/venv/bin/python -c 'import daemon; print("FROM", daemon.__file__)'
        {CLEAN_ENV} setpriv --reuid {NOBODY} --regid 4242 --clear-groups {PREFIX}/venv/bin/sigd check -c {cfg}; echo OTHER_RC=$?
    """,
    )
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


def _service_keys(unit: str) -> dict[str, list[str]]:
    """The [Service] section's Key=value lines (a key may repeat)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        if line.startswith("["):
            section = line.strip()
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def _sandbox_script(root: Path, unit: dict[str, list[str]], gid: int) -> str:
    """A shell script for `unshare -mn` that gives the unit's ExecStartPre and ExecStart what
    systemd would: /opt/sigd and /etc/sigd at their final paths, every mount read-only
    (ProtectSystem=strict), /root, /home and /run/user empty and inaccessible (ProtectHome=yes),
    a private /tmp (PrivateTmp=yes), a fresh /var/lib/sigd owned by the service
    (StateDirectory=sigd, StateDirectoryMode), its working directory, and a clean environment
    (Environment= and EnvironmentFile=) as uid 65534 with no new privileges."""
    state = f"/var/lib/{unit['StateDirectory'][0]}"
    env = dict(v.split("=", 1) for v in unit.get("Environment", []))
    for line in (root / unit["EnvironmentFile"][0].lstrip("/")).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            env.update([line.split("=", 1)])
    as_service = (
        "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "
        + " ".join(f"{k}={v}" for k, v in env.items())
        + f" setpriv --reuid {NOBODY} --regid {gid} --clear-groups --no-new-privs "
    )
    return f"""set -e
ip link set lo up
mount --make-rprivate /
mount -t tmpfs tmpfs /opt
mkdir -p {PREFIX} /opt/.host-etc /opt/.etc-sigd
mount --bind {root}{PREFIX} {PREFIX}
mount --bind /etc /opt/.host-etc
mount --bind {root}/etc/sigd /opt/.etc-sigd
mount -t tmpfs tmpfs /etc
for e in /opt/.host-etc/* /opt/.host-etc/.[!.]*; do [ -e "$e" ] && ln -s "$e" "/etc/${{e##*/}}"; done
mkdir /etc/sigd && mount --bind /opt/.etc-sigd /etc/sigd
while read -r dev mp rest; do
  case "$mp" in /proc*|/sys*|/dev*) ;; *) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;; esac
done < /proc/self/mounts
for home in /root /home /run/user; do [ -d "$home" ] && mount -t tmpfs -o mode=0000,ro tmpfs "$home"; done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /var/lib
mkdir -m {unit["StateDirectoryMode"][0]} {state} && chown {NOBODY}:{gid} {state}
cd {unit["WorkingDirectory"][0]}
set +e
{as_service} sh -c 'touch /usr/sigd-probe 2>/dev/null && echo USR_WRITABLE; ls /root >/dev/null 2>&1 && echo HOME_VISIBLE; touch {state}/probe && echo STATE_WRITABLE'
{as_service} {unit["ExecStartPre"][0]}
echo PRE_RC=$?
exec {as_service} {unit["ExecStart"][0]}
"""


@pytest.mark.skipif(not _can_sandbox() or shutil.which("ip") is None, reason="needs root, unshare -mn, setpriv, ip")
@pytest.mark.skipif(
    sys.prefix.startswith("/tmp/"),
    reason="the staged install reuses this checkout's venv, which the unit's private /tmp hides when the checkout is under /tmp",
)
def test_unit_exec_start_runs_as_an_unprivileged_uid_under_the_units_sandbox(destdir: Path) -> None:
    # What systemd would do, without systemd: the installed unit's own ExecStartPre and ExecStart,
    # as uid 65534 under the unit's sandbox (ProtectHome, a read-only /, the StateDirectory), in
    # a network namespace (the shipped ports are fixed), until ready; then SIGTERM. The venv's
    # interpreter must be outside /root: a pyenv under /root is hidden here, as under systemd.
    import grp

    unit = _service_keys((destdir / "etc/systemd/system/sigd.service").read_text())
    assert unit["ProtectHome"] == ["yes"] and unit["ProtectSystem"] == ["strict"] and unit["PrivateTmp"] == ["yes"]
    gid = grp.getgrnam(unit["Group"][0]).gr_gid
    proc = subprocess.Popen(
        ["unshare", "-mn", "sh", "-c", _sandbox_script(destdir, unit, gid)],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()  # drained all along: a full pipe would block the daemon's logging
    try:
        deadline = time.monotonic() + 180
        while not any('"daemon_ready"' in line for line in list(lines)) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines[-30:])
            time.sleep(0.2)
        out = "".join(lines)
        assert "STATE_WRITABLE" in out and "USR_WRITABLE" not in out and "HOME_VISIBLE" not in out, out[-3000:]
        assert "sigd check: /etc/sigd/config.toml: ok" in out and "PRE_RC=0" in out, out[-3000:]
        assert '"daemon_ready"' in out, out[-3000:]
        proc.terminate()
        assert proc.wait(60) == 0, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_make_install_service_is_the_same_command(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            "make",
            "-s",
            "install-service",
            f"DESTDIR={tmp_path}",
            "PREFIX=/opt/sigd-m",
            f"PYTHON={sys.executable}",
            "INSTALL_ARGS=--dry-run --group nogroup",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (
        f"would install-service: install -m 0644 systemd/sigd.service {tmp_path}/etc/systemd/system/sigd.service" in res.stdout
        and "/opt/sigd-m/venv" in res.stdout
        and "torch==" in res.stdout
    )
    assert list(tmp_path.iterdir()) == []


def test_a_home_directory_interpreter_is_refused_naming_python(tmp_path: Path) -> None:
    from daemon.service.install import HOMES

    here = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    if not any(here.is_relative_to(h) for h in HOMES):
        pytest.skip(f"this host's python ({here}) is not under a home directory")
    res = _sigd("install-service", "--destdir", str(tmp_path), "--group", "nogroup", "--python", str(here))
    assert res.returncode == 2 and res.stdout == "" and list(tmp_path.iterdir()) == []
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"sigd install-service: --python {here}: ") and "ProtectHome=yes" in line
    # without --python the installer picks one the service can run, never the home one
    plan = _sigd("install-service", "--destdir", str(tmp_path), "--group", "nogroup", "--dry-run")
    venv_line = next(line for line in plan.stdout.splitlines() if " -m venv " in line)
    assert not any(h.as_posix() + "/" in venv_line.split(" -m venv ")[0] for h in HOMES), venv_line


def test_a_shim_or_unsearchable_interpreter_is_judged_with_the_service_users_permissions(tmp_path: Path) -> None:
    import grp as grp_mod

    from daemon.service.install import Interpreter, Layout, unusable

    lay = Layout(user="nobody", group=grp_mod.getgrgid(NOBODY).gr_name)
    real = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    shimmed = Interpreter(Path("/home/dev/.pyenv/versions/3.12.4/bin/python3.12"), (3, 12), real.parent, True)
    assert "under /home, which the service cannot see (ProtectHome=yes)" in str(unusable(shimmed, lay, need_ensurepip=False))
    old = Interpreter(Path("/usr/bin/python3.9"), (3, 9), Path("/usr/lib/python3.9"), True)
    assert "needs >= 3.11" in str(unusable(old, lay, need_ensurepip=False))
    # an interpreter in a directory only its owner (root) may enter: nobody cannot run it
    root = Path(tempfile.mkdtemp(prefix="sigd-python-", dir="/tmp"))  # pytest's tmp is 0700 itself
    try:
        os.chmod(root, 0o755)
        private = root / "private"
        (private / "bin").mkdir(parents=True)
        (private / "bin" / "python3").write_text("")
        os.chmod(private / "bin" / "python3", 0o755)
        os.chmod(private, 0o700)
        hidden = Interpreter(private / "bin" / "python3", (3, 11), private, True)
        assert (
            unusable(hidden, lay, need_ensurepip=False) == f"{private} (mode 0700) is not searchable by the service user nobody"
        )
        os.chmod(private, 0o755)
        assert unusable(hidden, lay, need_ensurepip=False) is None
    finally:
        shutil.rmtree(root)


def test_a_missing_group_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    res = _sigd("install-service", "--destdir", str(tmp_path), "--reuse-site-packages", "--group", "sigdnosuchgroup")
    assert res.returncode == 2 and res.stdout == "" and list(tmp_path.iterdir()) == []
    assert res.stderr.splitlines() == [
        "sigd install-service: --group sigdnosuchgroup: no such group; with --destdir "
        "the installer creates no accounts (create it: groupadd --system NAME, or name "
        "an existing one)"
    ]


def test_the_default_torch_is_the_makefiles_and_ray_configs_get_the_research_extra(tmp_path: Path) -> None:
    import re

    spec = re.search(r"^TORCH_SPEC \?= (\S+)$", (REPO / "Makefile").read_text(), flags=re.M).group(1)
    plan = _sigd("install-service", "--destdir", str(tmp_path), "--group", "nogroup", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"-m pip install {spec!r}" in plan.stdout and f"-m pip install <sigd from {REPO}>" in plan.stdout
    etc = tmp_path / "etc/sigd"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text('[research]\nrunner = "ray"\n')  # a kept config that runs on Ray
    plan = _sigd("install-service", "--destdir", str(tmp_path), "--group", "nogroup", "--dry-run")
    assert f"-m pip install <sigd[research] from {REPO}>" in plan.stdout, plan.stdout


@pytest.mark.skipif(
    Path("/run/systemd/system").is_dir() or os.geteuid() != 0,
    reason="needs root on a host where systemd is not running (it would touch the real one)",
)
def test_uninstall_without_systemd_removes_everything_and_says_reload_was_skipped(tmp_path: Path) -> None:
    prefix, units, etc = tmp_path / "opt" / "sigd", tmp_path / "units", tmp_path / "etc"
    (prefix / "venv" / "bin").mkdir(parents=True)
    units.mkdir()
    (units / "sigd.service").write_text("[Service]\n")
    res = _sigd("uninstall-service", "--prefix", str(prefix), "--unit-dir", str(units), "--etc-dir", str(etc))
    assert res.returncode == 0, res.stderr
    assert "systemd is not running: daemon-reload skipped" in res.stdout
    assert not prefix.exists() and not (units / "sigd.service").exists()
