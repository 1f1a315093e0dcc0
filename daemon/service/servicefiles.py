"""The files an installed service runs on, rendered from the checkout's: config.toml and the unit.

Rendering edits single lines and keeps every comment, so /etc/sigd/config.toml reads like
the shipped file with the install's absolute paths.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

SHIPPED_PREFIX = "/opt/sigd"  # the paths systemd/sigd.service is written with
SHIPPED_ETC = "/etc/sigd"
_SECTION = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


class ServicePaths(Protocol):
    prefix: Path
    etc: Path
    user: str
    group: str


def toml_string(value: str) -> str:
    """A TOML basic string (JSON-style escapes are valid TOML)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_keys(text: str, values: dict[tuple[str, str], str]) -> str:
    """`text` with `key = value` set in `[section]` for each ((section, key), TOML value).

    An existing one-line assignment is replaced in place; a missing key is
    added at the end of its section, a missing section at the end of the file.
    """
    lines = text.splitlines()
    todo = dict(values)
    section, ends = "", {"": len(lines)}
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if m:
            section = m.group(1).strip()
            continue
        ends[section] = i + 1
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key is not None and (section, key) in todo:
            lines[i] = f"{key} = {todo.pop((section, key))}"
    for (sec, key), value in sorted(todo.items(), key=lambda kv: -ends.get(kv[0][0], len(lines))):
        if sec in ends:
            lines.insert(ends[sec], f"{key} = {value}")
        else:
            lines += ["", f"[{sec}]", f"{key} = {value}"]
    return "\n".join(lines) + "\n"


def render_config(shipped: str, state: Path, site_packages: Path) -> str:
    """The shipped config with absolute paths: the state under `state`; what the checkout's
    config points at inside its packages (artifacts, tapes) where the install put them."""
    raw: dict[str, Any] = tomllib.loads(shipped)

    def installed(value: str) -> str:
        return value if not value or PurePosixPath(value).is_absolute() else str(site_packages / value)

    models = {name: installed(p) for name, p in raw["models"]["paths"].items()}
    table = "{ " + ", ".join(f"{name} = {toml_string(p)}" for name, p in models.items()) + " }"
    values = {
        ("store", "path"): toml_string(str(state / "sigd.sqlite")),
        ("retrain", "artifacts_dir"): toml_string(str(state / "models")),
        ("models", "paths"): table,
    }
    tape = raw.get("local_exchange", {}).get("tape", "")
    if tape:
        values[("local_exchange", "tape")] = toml_string(installed(tape))
    return set_keys(shipped, values)


def render_unit(shipped: str, lay: ServicePaths) -> str:
    """The shipped unit with the install's prefix, config directory and service account."""
    text = shipped.replace(f"{SHIPPED_PREFIX}/", f"{lay.prefix}/").replace(f"{SHIPPED_ETC}/", f"{lay.etc}/")
    text = re.sub(r"^User=.*$", f"User={lay.user}", text, flags=re.M)
    return re.sub(r"^Group=.*$", f"Group={lay.group}", text, flags=re.M)
