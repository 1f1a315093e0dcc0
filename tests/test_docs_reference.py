"""The generated reference (docs/gen_reference.py) covers the code: every config key, every CLI
command and flag, every HTTP route, event and alert type, every metric.

The expectations are collected independently of the generator where that is possible (the
metrics by scanning the source, the flags from argparse's own help), so a generator that
skipped something would fail here.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import re
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

from daemon import config as config_mod
from daemon.service.cli import COMMANDS, build_parser
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "docs"))
gen = importlib.import_module("gen_reference")


@pytest.fixture(scope="module")
def config_page() -> str:
    return str(gen.config_page())


@pytest.fixture(scope="module")
def cli_page() -> str:
    return str(gen.cli_page())


def _rows(page: str) -> dict[str, list[str]]:
    """First cell (without backticks) -> the row's cells, for every table row of a page."""
    out = {}
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            out[cells[0].strip("`")] = cells
    return out


def _every_key(cls: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, walked here without the generator."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if cls is config_mod.Config and f.name == "source":
            continue
        key = prefix + f.name
        tp = hints[f.name]
        args = typing.get_args(tp)
        if dataclasses.is_dataclass(tp):
            keys += _every_key(tp, key + ".")
            continue
        keys.append(key)
        if typing.get_origin(tp) is tuple and args and dataclasses.is_dataclass(args[0]):
            keys += _every_key(args[0], key + "[].")
        if typing.get_origin(tp) is dict and dataclasses.is_dataclass(args[1]):
            keys += _every_key(args[1], key + '."X/Y".')
    return keys


def test_every_config_key_is_in_the_reference(config_page: str) -> None:
    rows = _rows(config_page)
    keys = _every_key(config_mod.Config)
    assert len(keys) > 100  # the walk found the sections (a silent empty walk would pass below)
    missing = [k for k in keys if k not in rows]
    assert not missing, f"config keys missing from the reference: {missing}"


def test_config_rows_carry_type_default_limits_and_comment(config_page: str) -> None:
    rows = _rows(config_page)
    _, typ, default, limits, what = rows["exchange.warmup_bars"]
    assert (typ, default, limits) == ("integer", "`600`", "must be within 10..100000")
    _, typ, default, _, what = rows["local_exchange.port"]
    assert (typ, default, what) == ("integer", "`0`", "0 = an ephemeral port")
    _, typ, default, limits, _ = rows["strategy.stop_loss"]  # a limit set inside a loop of check()
    assert typ == "number" and default == "`0.02`" and limits == "must be within [0, 1) (0 = off)"
    assert rows["broker.mode"][1] == '"alerts" \\| "paper" \\| "testnet"'
    # the shipped artifacts' default paths are shown relative to the checkout, never this machine's
    assert str(REPO) not in config_page and "models/artifacts/mtf_transformer" in rows["models.paths"][2]


def test_every_cli_command_and_flag_is_in_the_reference(cli_page: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    for name, p in sub.choices.items():
        assert f"## sigd {name}" in cli_page, name
        section = cli_page.split(f"## sigd {name}\n", 1)[1].split("\n## sigd ", 1)[0]
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", p.format_help()):
            if flag in ("-h", "--help"):
                continue
            assert flag in section, f"sigd {name}: {flag} missing from the reference"


def test_every_route_event_and_alert_type_is_documented() -> None:
    page = gen.http_page()
    assert "**undocumented**" not in page, "give the new route or alert type a line in docs/gen_reference.py"
    routes = gen.http_routes()
    for path in ("/healthz", "/status", "/metrics", "/pause", "/flat", "/ws/events"):
        assert any(p == path for _, p, _ in routes), path
    from daemon import events

    kinds = {
        c.kind for c in vars(events).values() if isinstance(c, type) and issubclass(c, events.Event) and c is not events.Event
    }
    assert kinds and all(f"| `{k}` |" in page for k in kinds)
    for t in ("signal", "order", "fill", "error", "retrain", "daily_summary"):
        assert f"| `{t}` |" in page


def _metric_names_in_source() -> set[str]:
    """Every literal `REGISTRY.counter/gauge/histogram("name", ...)` in daemon/ (by parsing, not importing)."""
    names = set()
    for path in (REPO / "daemon").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("counter", "gauge", "histogram")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "REGISTRY"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    return names


def test_every_metric_is_in_the_reference() -> None:
    page = gen.metrics_page()
    names = _metric_names_in_source()
    assert len(names) > 30
    missing = sorted(n for n in names if f"| `{n}` |" not in page)
    assert not missing, f"metrics missing from the reference: {missing}"


def test_the_generator_writes_every_page(tmp_path: Path) -> None:
    assert gen.main([str(tmp_path)]) == 0
    for rel in gen.PAGES:
        text = (tmp_path / rel).read_text(encoding="utf-8")
        assert text.startswith("# ") and gen.GENERATED_NOTE in text
