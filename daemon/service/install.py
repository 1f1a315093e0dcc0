"""`sigd install-service` / `sigd uninstall-service`: sigd as a systemd service, from a checkout.

One plan of steps, printed by `--dry-run` and carried out otherwise:
a fresh venv at PREFIX/venv with sigd (and its shipped artifacts) installed into it, not
editable; PREFIX/README.md; /etc/sigd/config.toml (the shipped config with absolute paths:
the state under /var/lib/sigd, models and tapes inside the venv), readable by the service's group;
/etc/sigd/env for the secrets (0640, the service's group); the unit with the prefix's paths;
`systemctl daemon-reload`. `--destdir DIR` stages all of it under DIR (packaging, tests):
the paths written into files stay the final ones, users are not created and systemd is not
touched. An existing config or env file is kept (an upgrade never overwrites your edits).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from daemon.service.servicefiles import render_config, render_unit

SOURCE = Path(__file__).resolve().parents[2]  # the checkout holding pyproject.toml, config.toml, systemd/
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
    """One thing the installer does; `text` is what --dry-run prints."""

    text: str
    run: Callable[[], None] = field(repr=False)


def _sh(*cmd: str | Path) -> Callable[[], None]:
    return lambda: subprocess.run([str(c) for c in cmd], check=True)


def install_plan(lay: Layout, *, reuse_site_packages: bool = False, torch_spec: str = "torch") -> list[Step]:
    """Every step of an install, in order."""
    venv, py = lay.at(lay.venv), lay.at(lay.venv) / "bin" / "python"
    steps: list[Step] = []
    if lay.destdir is None:
        steps.append(Step(f"create system group {lay.group} and user {lay.user} unless they exist",
                          lambda: _ensure_account(lay)))
    if reuse_site_packages:
        # Tests and offline machines: the venv sees this interpreter's packages instead of downloading them.
        steps.append(Step(f"{sys._base_executable} -m venv --without-pip --clear {venv}"  # type: ignore[attr-defined]
                          f" (+ a .pth onto {', '.join(site.getsitepackages())})", lambda: _reuse_venv(venv)))
        steps.append(Step(f"{py} -m pip install --no-deps --no-build-isolation <sigd from {SOURCE}>",
                          lambda: _pip_install_source(py, "--no-deps", "--no-build-isolation")))
    else:
        steps.append(Step(f"{sys._base_executable} -m venv --clear {venv}",  # type: ignore[attr-defined]
                          _sh(sys._base_executable, "-m", "venv", "--clear", venv)))  # type: ignore[attr-defined]
        steps.append(Step(f"{py} -m pip install {torch_spec!r}", _sh(py, "-m", "pip", "install", "-q", torch_spec)))
        steps.append(Step(f"{py} -m pip install <sigd from {SOURCE}>", lambda: _pip_install_source(py)))
    if lay.destdir is not None:
        steps.append(Step(f"rewrite {lay.destdir} out of the venv's scripts", lambda: _strip_destdir(lay)))
    steps.append(Step(f"install -m 0644 README.md {lay.at(lay.prefix / 'README.md')}",
                      lambda: _write(lay.at(lay.prefix / "README.md"), (SOURCE / "README.md").read_text(), 0o644)))
    steps.append(Step(f"install -d -m 0750 -g {lay.group} {lay.at(lay.etc)}", lambda: _etc_dir(lay)))
    steps.append(Step(f"install -m 0640 -g {lay.group} config.toml {lay.at(lay.etc / 'config.toml')} "
                      f"(absolute paths; kept if it exists)", lambda: _config(lay)))
    steps.append(Step(f"install -m 0640 -g {lay.group} /dev/null {lay.at(lay.etc / 'env')} (secrets; kept if it exists)",
                      lambda: _keep_or_write(lay, lay.etc / "env", ENV_TEMPLATE)))
    steps.append(Step(f"install -m 0644 systemd/sigd.service {lay.at(lay.unit)} (paths of {lay.prefix})",
                      lambda: _write(lay.at(lay.unit), render_unit((SOURCE / "systemd" / "sigd.service").read_text(),
                                                                   lay), 0o644)))
    if lay.destdir is None:
        steps.append(Step("systemctl daemon-reload", _sh("systemctl", "daemon-reload")))
    return steps


def uninstall_plan(lay: Layout, *, purge: bool = False) -> list[Step]:
    """Stop and remove the service and the prefix; config, secrets and state only with `purge`."""
    steps: list[Step] = []
    if lay.destdir is None:
        steps.append(Step("systemctl disable --now sigd", lambda: _quiet("systemctl", "disable", "--now", "sigd")))
    steps.append(Step(f"rm -f {lay.at(lay.unit)}", lambda: lay.at(lay.unit).unlink(missing_ok=True)))
    if lay.destdir is None:
        steps.append(Step("systemctl daemon-reload", _sh("systemctl", "daemon-reload")))
    steps.append(Step(f"rm -rf {lay.at(lay.prefix)}", lambda: shutil.rmtree(lay.at(lay.prefix), ignore_errors=True)))
    if purge:
        for path in (lay.etc, lay.state):
            steps.append(Step(f"rm -rf {lay.at(path)}", lambda p=path: shutil.rmtree(lay.at(p), ignore_errors=True)))
    return steps


def _ensure_account(lay: Layout) -> None:
    try:
        grp.getgrnam(lay.group)
    except KeyError:
        subprocess.run(["groupadd", "--system", lay.group], check=True)
    try:
        pwd.getpwnam(lay.user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--gid", lay.group, "--no-create-home", "--home-dir", str(lay.state),
                        "--shell", "/usr/sbin/nologin", lay.user], check=True)


def _reuse_venv(venv: Path) -> None:
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", "--clear", str(venv)],  # type: ignore[attr-defined]
                   check=True)
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "_sigd_reuse.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))


def _pip_install_source(py: Path, *extra: str) -> None:
    """pip install a clean copy of the checkout (an in-tree build would litter it with build/)."""
    with tempfile.TemporaryDirectory(prefix="sigd-src-") as tmp:
        for part in _package_parts():
            src, dst = SOURCE / part, Path(tmp) / part
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy2(src, dst)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-warn-script-location", *extra, tmp], check=True)


def _package_parts() -> list[str]:
    """pyproject.toml, README.md and the top-level packages pyproject's `packages.find` includes."""
    doc = tomllib.loads((SOURCE / "pyproject.toml").read_text())
    patterns = doc["tool"]["setuptools"]["packages"]["find"]["include"]
    dirs = [p.name for p in SOURCE.iterdir() if p.is_dir() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    return ["pyproject.toml", "README.md", *sorted(dirs)]


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
        raise SystemExit(f"sigd install-service: group {lay.group!r} does not exist "
                         "(create it, or pass --group of an existing one)") from None


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
    _keep_or_write(lay, lay.etc / "config.toml",
                   render_config((SOURCE / "config.toml").read_text(), lay.state, site_packages))


def _quiet(*cmd: str) -> None:
    subprocess.run(list(cmd), check=False)


def _layout(args: argparse.Namespace) -> Layout:
    prefix = Path(args.prefix)
    if not prefix.is_absolute():
        raise SystemExit(f"sigd: --prefix must be an absolute path, got {args.prefix!r}")
    for flag, name in (("--user", args.user), ("--group", args.group)):
        # what useradd/groupadd accept (and systemd's User=), checked before any step runs
        if name is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name):
            raise SystemExit(f"sigd: {flag} {name!r}: not a system user/group name (lower case, digits, _ and -)")
    return Layout(prefix=prefix, etc=Path(args.etc_dir), unit_dir=Path(args.unit_dir),
                  destdir=Path(args.destdir).resolve() if args.destdir else None,
                  user=args.user, group=args.group or args.user)


def _carry_out(steps: list[Step], dry_run: bool, verb: str) -> int:
    for step in steps:
        print(f"{'would ' if dry_run else ''}{verb}: {step.text}", flush=True)
        if not dry_run:
            try:
                step.run()
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"sigd {verb}: failed at {step.text!r}: {exc}", file=sys.stderr)
                return 1
    return 0


def install_command(args: argparse.Namespace) -> int:
    """`sigd install-service`."""
    if not (SOURCE / "pyproject.toml").is_file():
        print(f"sigd install-service: needs a source checkout (no pyproject.toml in {SOURCE})", file=sys.stderr)
        return 2
    lay = _layout(args)
    steps = install_plan(lay, reuse_site_packages=args.reuse_site_packages, torch_spec=args.torch_spec)
    code = _carry_out(steps, args.dry_run, "install-service")
    if code == 0 and not args.dry_run and lay.destdir is None:
        print(f"installed: edit {lay.etc / 'config.toml'} and {lay.etc / 'env'}, then: systemctl enable --now sigd")
    return code


def uninstall_command(args: argparse.Namespace) -> int:
    """`sigd uninstall-service`."""
    return _carry_out(uninstall_plan(_layout(args), purge=args.purge), args.dry_run, "uninstall-service")


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
        p.add_argument("--torch-spec", default="torch", help="pip requirement for PyTorch, installed first")
        p.add_argument("--reuse-site-packages", action="store_true",
                       help="no downloads: the venv sees this interpreter's installed packages (tests, offline)")
    else:
        p.add_argument("--purge", action="store_true", help=f"also delete the config, secrets and state")
