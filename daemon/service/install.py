"""sigd as a systemd service, from a checkout: the plan of `sigd install-service` / `sigd uninstall-service`
(carried out, step by step on the terminal, by daemon/commands/service.py).

One plan of steps, printed by `--dry-run` and carried out otherwise:
a fresh venv at PREFIX/venv with sigd (and its shipped artifacts) installed into it, not
editable; PREFIX/README.md; /etc/sigd/config.toml (the shipped config with absolute paths:
the state under /var/lib/sigd, models and tapes inside the venv), readable by the service's group;
/etc/sigd/env for the secrets (0640, the service's group); the unit with the prefix's paths;
`systemctl daemon-reload`. `--destdir DIR` stages all of it under DIR (packaging, tests):
the paths written into files stay the final ones, users are not created and systemd is not
touched. An existing config or env file is kept (an upgrade never overwrites your edits).

The venv's interpreter must be one the service can run: systemd starts it as the service
user with ProtectHome=yes, so /root, /home and /run/user are not there. The first `python3`
on PATH is often a pyenv shim whose interpreter lives under /root (mode 0700); it is skipped
for the next usable one (/usr/bin/python3 ...), and refused with one line naming `--python`
when given. Everything that can be refused (interpreter, group) is checked before any step.
"""

from __future__ import annotations

import argparse
import fnmatch
import grp
import os
import pwd
import re
import shutil
import site
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.service.servicefiles import render_config, render_unit

SOURCE = Path(__file__).resolve().parents[2]  # the checkout holding pyproject.toml, config.toml, systemd/
MIN_PYTHON = (3, 11)  # pyproject's requires-python
HOMES = (Path("/root"), Path("/home"), Path("/run/user"))  # what ProtectHome=yes hides from the service
# Where a usable interpreter is looked for when the one running the installer is not usable.
SYSTEM_PYTHONS = (
    "/usr/bin/python3",
    "/usr/local/bin/python3",
    "/usr/bin/python3.13",
    "/usr/bin/python3.12",
    "/usr/bin/python3.11",
)
# Asked of a candidate: the real interpreter behind it (a shim or a venv's python names another) and its stdlib.
_PROBE = (
    "import os, sys, venv; print(os.path.realpath(getattr(sys, '_base_executable', sys.executable))); "
    "print(sys.version_info[0], sys.version_info[1]); print(os.path.dirname(os.__file__)); "
    "import importlib.util as u; print(u.find_spec('ensurepip') is not None)"
)


class Refused(Exception):
    """A flag or the host cannot give a working install: one line for a person, exit 2."""


ENV_TEMPLATE = """\
# sigd secrets, one NAME=value a line (read by systemd as root; never put them in config.toml).
# SIGD_API_TOKEN=        bearer token of the HTTP API's actions
# SIGD_API_KEY=          exchange key and secret (endpoint testnet or live)
# SIGD_API_SECRET=
# SIGD_WEBHOOK_SECRET=   one per [[alerts.webhooks]] secret_env
# SIGD_TELEGRAM_TOKEN=
"""


@dataclass(frozen=True)
class Layout:
    """Where an installed sigd lives (final paths) and where its files are written (`at`)."""

    prefix: Path = Path("/opt/sigd")
    etc: Path = Path("/etc/sigd")
    unit_dir: Path = Path("/etc/systemd/system")
    state: Path = Path("/var/lib/sigd")
    destdir: Path | None = None
    user: str = "sigd"
    group: str = "sigd"

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def unit(self) -> Path:
        return self.unit_dir / "sigd.service"

    def at(self, path: Path) -> Path:
        """Where `path` is written: under DESTDIR when staging."""
        return self.destdir / path.relative_to("/") if self.destdir else path


@dataclass
class Step:
    """One thing the installer does; `text` is what --dry-run prints. `run` raises Skipped when
    the step does not apply on this machine (the command shows why and goes on)."""

    text: str
    run: Callable[[], None] = field(repr=False)


class Skipped(Exception):
    """A step that does not apply here; the message says why."""


def _sh(*cmd: str | Path) -> Callable[[], None]:
    return lambda: subprocess.run([str(c) for c in cmd], check=True)


def install_plan(
    lay: Layout, *, python: Path, reuse_site_packages: bool = False, torch_spec: str = "", extras: tuple[str, ...] = ()
) -> list[Step]:
    """Every step of an install, in order: `python` builds the venv (choose_python), `extras` of
    sigd are installed with it (the research extra when the config runs on Ray)."""
    venv, py = lay.at(lay.venv), lay.at(lay.venv) / "bin" / "python"
    torch_spec = torch_spec or makefile_torch_spec()
    sigd = f"<sigd{'[' + ','.join(extras) + ']' if extras else ''} from {SOURCE}>"
    steps: list[Step] = []
    if lay.destdir is None:
        steps.append(Step(f"create system group {lay.group} and user {lay.user} unless they exist", lambda: _ensure_account(lay)))
    if reuse_site_packages:
        # Tests and offline machines: the venv sees this interpreter's packages instead of downloading them.
        steps.append(
            Step(
                f"{python} -m venv --without-pip --clear {venv} (+ a .pth onto {', '.join(site.getsitepackages())})",
                lambda: _reuse_venv(python, venv),
            )
        )
        steps.append(
            Step(
                f"{py} -m pip install --no-deps --no-build-isolation {sigd}",
                lambda: _pip_install_source(py, extras, "--no-deps", "--no-build-isolation"),
            )
        )
    else:
        steps.append(Step(f"{python} -m venv --clear {venv}", _sh(python, "-m", "venv", "--clear", venv)))
        steps.append(Step(f"{py} -m pip install {torch_spec!r}", _sh(py, "-m", "pip", "install", "-q", torch_spec)))
        steps.append(Step(f"{py} -m pip install {sigd}", lambda: _pip_install_source(py, extras)))
    if lay.destdir is not None:
        steps.append(Step(f"rewrite {lay.destdir} out of the venv's scripts", lambda: _strip_destdir(lay)))
    steps.append(
        Step(
            f"install -m 0644 README.md {lay.at(lay.prefix / 'README.md')}",
            lambda: _write(lay.at(lay.prefix / "README.md"), (SOURCE / "README.md").read_text(), 0o644),
        )
    )
    steps.append(Step(f"install -d -m 0750 -g {lay.group} {lay.at(lay.etc)}", lambda: _etc_dir(lay)))
    steps.append(
        Step(
            f"install -m 0640 -g {lay.group} config.toml {lay.at(lay.etc / 'config.toml')} (absolute paths; kept if it exists)",
            lambda: _config(lay),
        )
    )
    steps.append(
        Step(
            f"install -m 0640 -g {lay.group} /dev/null {lay.at(lay.etc / 'env')} (secrets; kept if it exists)",
            lambda: _keep_or_write(lay, lay.etc / "env", ENV_TEMPLATE),
        )
    )
    steps.append(
        Step(
            f"install -m 0644 systemd/sigd.service {lay.at(lay.unit)} (paths of {lay.prefix})",
            lambda: _write(lay.at(lay.unit), render_unit((SOURCE / "systemd" / "sigd.service").read_text(), lay), 0o644),
        )
    )
    if lay.destdir is None:
        steps.append(_daemon_reload())
    return steps


def uninstall_plan(lay: Layout, *, purge: bool = False) -> list[Step]:
    """Stop and remove the service and the prefix; config, secrets and state only with `purge`."""
    steps: list[Step] = []
    if lay.destdir is None:
        steps.append(Step("systemctl disable --now sigd", lambda: _quiet("systemctl", "disable", "--now", "sigd")))
    steps.append(Step(f"rm -f {lay.at(lay.unit)}", lambda: lay.at(lay.unit).unlink(missing_ok=True)))
    if lay.destdir is None:
        steps.append(_daemon_reload())
    steps.append(Step(f"rm -rf {lay.at(lay.prefix)}", lambda: shutil.rmtree(lay.at(lay.prefix), ignore_errors=True)))
    if purge:
        for path in (lay.etc, lay.state):
            steps.append(Step(f"rm -rf {lay.at(path)}", lambda p=path: shutil.rmtree(lay.at(p), ignore_errors=True)))
    return steps


def systemd_running() -> bool:
    """True when systemd is PID 1 and answering (sd_booted(3): /run/systemd/system exists)."""
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def _daemon_reload() -> Step:
    """`systemctl daemon-reload`, skipped with a line saying so where systemd is not running (a
    container, a chroot, an image build): the files are in place and load at the next boot."""

    def run() -> None:
        if not systemd_running():
            raise Skipped(
                "systemd is not running: daemon-reload skipped (systemd reads the unit directory when it "
                "starts; on a running systemd, run: systemctl daemon-reload)"
            )
        subprocess.run(["systemctl", "daemon-reload"], check=True)

    return Step("systemctl daemon-reload", run)


def makefile_torch_spec() -> str:
    """The Makefile's TORCH_SPEC default: the same torch build as `make setup` installs."""
    m = re.search(r"^TORCH_SPEC\s*\?=\s*(\S+)\s*$", (SOURCE / "Makefile").read_text(), flags=re.MULTILINE)
    return m.group(1) if m else "torch"


def config_extras(lay: Layout) -> tuple[str, ...]:
    """sigd's extras the installed config needs: "research" (Ray) when its [research] runs on Ray.
    The config read is the one the service will run: the kept /etc/sigd/config.toml, else the shipped one."""
    kept = lay.at(lay.etc / "config.toml")
    path = kept if kept.is_file() else SOURCE / "config.toml"
    try:
        research = tomllib.loads(path.read_text()).get("research", {})
    except (OSError, tomllib.TOMLDecodeError):
        return ()  # unreadable or broken: the service's `sigd check` says so; no extra to guess
    uses_ray = research.get("runner") == "ray" or bool(research.get("ray_address"))
    return ("research",) if uses_ray else ()


@dataclass(frozen=True)
class Interpreter:
    """A python3 as the service would run it: its real path, version and standard library."""

    path: Path
    version: tuple[int, int]
    stdlib: Path
    ensurepip: bool


def probe(candidate: str | Path) -> Interpreter | None:
    """What `candidate` really runs (a shim or a venv names another interpreter); None if it does not run."""
    try:
        res = subprocess.run([str(candidate), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = res.stdout.split("\n")
    if res.returncode != 0 or len(lines) < 4:
        return None
    major, minor = (int(v) for v in lines[1].split())
    return Interpreter(Path(lines[0]), (major, minor), Path(lines[2]), lines[3] == "True")


def _service_ids(lay: Layout) -> tuple[int, set[int]]:
    """uid and gids the service runs with; a user still to be created has only its group (or nothing)."""
    try:
        pw = pwd.getpwnam(lay.user)
        uid, gids = pw.pw_uid, {pw.pw_gid}
    except KeyError:
        uid, gids = -1, set()
    try:
        gids.add(grp.getgrnam(lay.group).gr_gid)
    except KeyError:
        pass
    return uid, gids


def _allowed(path: Path, uid: int, gids: set[int], want: int) -> bool:
    """`want` (an R/W/X mask of the 'other' bits: 4, 2, 1) granted to uid/gids on `path`, as the kernel decides."""
    st = path.stat()
    if uid == 0:
        return True
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
    return (st.st_mode >> shift) & want == want


def unusable(interp: Interpreter, lay: Layout, *, need_ensurepip: bool) -> str | None:
    """Why the service could not run `interp` (None when it can): under a home directory that
    ProtectHome=yes hides, a directory its user cannot search, too old, no venv/ensurepip."""
    for home in HOMES:
        if interp.path.is_relative_to(home):
            return f"{interp.path} is under {home}, which the service cannot see (ProtectHome=yes)"
    if interp.version < MIN_PYTHON:
        return f"{interp.path} is Python {'.'.join(map(str, interp.version))}; sigd needs >= 3.11"
    if need_ensurepip and not interp.ensurepip:
        return f"{interp.path} has no ensurepip to create a venv with pip (Debian: apt install python3-venv)"
    uid, gids = _service_ids(lay)
    for target, leaf in ((interp.path, 5), (interp.stdlib, 5)):
        for d in [*reversed(target.parents)]:
            if not _allowed(d, uid, gids, 1):
                return f"{d} (mode {d.stat().st_mode & 0o777:04o}) is not searchable by the service user {lay.user}"
        if not _allowed(target, uid, gids, leaf):
            return f"{target} is not readable/executable by the service user {lay.user}"
    return None


def choose_python(lay: Layout, given: str | None, *, need_ensurepip: bool) -> Path:
    """The interpreter the venv is built from: `--python` if usable (else Refused), otherwise the
    first usable of the one running this installer, `python3` on PATH and the system's."""
    if given is not None:
        interp = probe(given)
        if interp is None:
            raise Refused(f"--python {given}: does not run as a Python interpreter")
        why = unusable(interp, lay, need_ensurepip=need_ensurepip)
        if why:
            raise Refused(
                f"--python {given}: {why}; pass a python3 >= 3.11 outside /root and /home (e.g. --python /usr/bin/python3)"
            )
        return interp.path
    reasons = []
    candidates = [sys._base_executable, shutil.which("python3"), *SYSTEM_PYTHONS]  # type: ignore[attr-defined]
    for cand in dict.fromkeys(c for c in candidates if c):
        interp = probe(cand)
        if interp is None:
            continue
        why = unusable(interp, lay, need_ensurepip=need_ensurepip)
        if why is None:
            return interp.path
        reasons.append(why)
    raise Refused(
        "no python3 the service can run: "
        + "; ".join(dict.fromkeys(reasons) or ["none found"])
        + ". Install one outside /root and /home (e.g. apt install python3 python3-venv) and pass --python PATH"
    )


def check_group(lay: Layout) -> None:
    """Before any step: a staged install (no accounts created) needs the group to exist already."""
    if lay.destdir is None:
        return  # the first step creates it
    try:
        grp.getgrnam(lay.group)
    except KeyError:
        raise Refused(
            f"--group {lay.group}: no such group; with --destdir the installer creates no accounts "
            "(create it: groupadd --system NAME, or name an existing one)"
        ) from None


def _ensure_account(lay: Layout) -> None:
    try:
        grp.getgrnam(lay.group)
    except KeyError:
        subprocess.run(["groupadd", "--system", lay.group], check=True)
    try:
        pwd.getpwnam(lay.user)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--gid",
                lay.group,
                "--no-create-home",
                "--home-dir",
                str(lay.state),
                "--shell",
                "/usr/sbin/nologin",
                lay.user,
            ],
            check=True,
        )


def _reuse_venv(python: Path, venv: Path) -> None:
    subprocess.run([str(python), "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "_sigd_reuse.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))


def _pip_install_source(py: Path, extras: tuple[str, ...], *extra: str) -> None:
    """pip install a clean copy of the checkout (an in-tree build would litter it with build/)."""
    with tempfile.TemporaryDirectory(prefix="sigd-src-") as tmp:
        for part in _package_parts():
            src, dst = SOURCE / part, Path(tmp) / part
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy2(src, dst)
        target = f"{tmp}[{','.join(extras)}]" if extras else tmp
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-warn-script-location", *extra, target], check=True)


def _package_parts() -> list[str]:
    """pyproject.toml, README.md, the licence files and the top-level packages pyproject's `packages.find` includes."""
    doc = tomllib.loads((SOURCE / "pyproject.toml").read_text())
    patterns = doc["tool"]["setuptools"]["packages"]["find"]["include"]
    dirs = [p.name for p in SOURCE.iterdir() if p.is_dir() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    licences = [p.name for pat in doc["project"].get("license-files", []) for p in sorted(SOURCE.glob(pat))]
    return ["pyproject.toml", "README.md", *licences, *sorted(dirs)]


def _strip_destdir(lay: Layout) -> None:
    """Scripts name their interpreter by absolute path: make it the final one, not DESTDIR's."""
    assert lay.destdir is not None
    staged, final = str(lay.at(lay.venv)), str(lay.venv)
    for path in [*lay.at(lay.venv).joinpath("bin").iterdir(), lay.at(lay.venv) / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if staged.encode() in data:
                path.write_bytes(data.replace(staged.encode(), final.encode()))


def _gid(lay: Layout) -> int:
    try:
        return grp.getgrnam(lay.group).gr_gid
    except KeyError:
        raise SystemExit(
            f"sigd install-service: group {lay.group!r} does not exist (create it, or pass --group of an existing one)"
        ) from None


def _write(path: Path, text: str, mode: int, gid: int = -1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.chown(tmp, 0 if os.geteuid() == 0 else -1, gid)
    os.replace(tmp, path)


def _etc_dir(lay: Layout) -> None:
    d = lay.at(lay.etc)
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o750)
    os.chown(d, 0 if os.geteuid() == 0 else -1, _gid(lay))


def _keep_or_write(lay: Layout, path: Path, text: str) -> None:
    if not lay.at(path).exists():
        _write(lay.at(path), text, 0o640, _gid(lay))


def _config(lay: Layout) -> None:
    (purelib,) = lay.at(lay.venv).joinpath("lib").glob("python3*/site-packages")
    site_packages = lay.venv / purelib.relative_to(lay.at(lay.venv))
    _keep_or_write(lay, lay.etc / "config.toml", render_config((SOURCE / "config.toml").read_text(), lay.state, site_packages))


def _quiet(*cmd: str) -> None:
    subprocess.run(list(cmd), check=False)


def add_arguments(p: argparse.ArgumentParser, *, install: bool) -> None:
    """The options both commands share (and install's own)."""
    p.add_argument("--prefix", default="/opt/sigd", help="where the venv goes (default /opt/sigd)")
    p.add_argument("--destdir", default=None, help="stage everything under this directory (no users, no systemctl)")
    p.add_argument("--etc-dir", default="/etc/sigd", help="config and env file directory")
    p.add_argument("--unit-dir", default="/etc/systemd/system")
    p.add_argument("--user", default="sigd", help="service user (created unless it exists)")
    p.add_argument("--group", default=None, help="service group (default: the user's name)")
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    if install:
        p.add_argument(
            "--torch-spec",
            default="",
            help="pip requirement for PyTorch, installed first "
            "(default: the Makefile's TORCH_SPEC, the build `make setup` installs)",
        )
        p.add_argument(
            "--python",
            default=None,
            metavar="PATH",
            help="interpreter of the service's venv: python3 >= 3.11 outside /root and /home "
            "(default: the first such one, e.g. /usr/bin/python3)",
        )
        p.add_argument(
            "--reuse-site-packages",
            action="store_true",
            help="no downloads: the venv sees this interpreter's installed packages (tests, offline)",
        )
    else:
        p.add_argument("--purge", action="store_true", help="also delete the config, secrets and state")
