"""`sigd install-service` / `sigd uninstall-service`: carry out the plan of daemon/service/install.py,
printing each step as it goes (`--dry-run`: print the plan only)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from daemon.service.install import (
    SOURCE,
    Layout,
    Refused,
    Skipped,
    Step,
    check_group,
    choose_python,
    config_extras,
    install_plan,
    uninstall_plan,
)


def _layout(args: argparse.Namespace) -> Layout:
    prefix = Path(args.prefix)
    if not prefix.is_absolute():
        raise SystemExit(f"sigd: --prefix must be an absolute path, got {args.prefix!r}")
    for flag, name in (("--user", args.user), ("--group", args.group)):
        # what useradd/groupadd accept (and systemd's User=), checked before any step runs
        if name is not None and not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name):
            raise SystemExit(f"sigd: {flag} {name!r}: not a system user/group name (lower case, digits, _ and -)")
    return Layout(
        prefix=prefix,
        etc=Path(args.etc_dir),
        unit_dir=Path(args.unit_dir),
        destdir=Path(args.destdir).resolve() if args.destdir else None,
        user=args.user,
        group=args.group or args.user,
    )


def _carry_out(steps: list[Step], dry_run: bool, verb: str) -> int:
    for step in steps:
        print(f"{'would ' if dry_run else ''}{verb}: {step.text}", flush=True)
        if not dry_run:
            try:
                step.run()
            except Skipped as why:
                print(why, flush=True)
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
    try:  # everything that can be refused, before the first step
        check_group(lay)
        python = choose_python(lay, args.python, need_ensurepip=not args.reuse_site_packages)
    except Refused as exc:
        print(f"sigd install-service: {exc}", file=sys.stderr)
        return 2
    steps = install_plan(
        lay, python=python, reuse_site_packages=args.reuse_site_packages, torch_spec=args.torch_spec, extras=config_extras(lay)
    )
    code = _carry_out(steps, args.dry_run, "install-service")
    if code == 0 and not args.dry_run and lay.destdir is None:
        print(f"installed: edit {lay.etc / 'config.toml'} and {lay.etc / 'env'}, then: systemctl enable --now sigd")
    return code


def uninstall_command(args: argparse.Namespace) -> int:
    """`sigd uninstall-service`."""
    return _carry_out(uninstall_plan(_layout(args), purge=args.purge), args.dry_run, "uninstall-service")
