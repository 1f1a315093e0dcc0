"""The reference pages of the docs site, generated from the code so that they cannot drift.

Four pages, each a function returning Markdown:

- `cli_page()`: every `sigd` command and flag, walked from the argparse tree that
  `daemon.service.cli.build_parser()` builds;
- `config_page()`: every config key with its type, default, limits and comment, walked from the
  typed `daemon.config.Config` dataclasses (limits are read from each section's `check()`, the
  comments from the source lines of the fields);
- `http_page()`: the HTTP routes of the API server (`daemon.service.api.Api.app()`), the typed
  events of the bus (`daemon.events`) and the alert types published to the outbox;
- `metrics_page()`: every metric registered in `daemon.metrics.REGISTRY` by the daemon's modules.

`hook.py` (an mkdocs hook named in mkdocs.yml) adds them to the site at build time; nothing
generated is committed. `python docs/gen_reference.py OUT_DIR` writes them to OUT_DIR to read.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import importlib
import inspect
import io
import pkgutil
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GENERATED_NOTE = (
    "*Generated from the code by `docs/gen_reference.py` at every docs build; "
    "do not edit. A test (`tests/test_docs_reference.py`) checks it covers everything.*"
)

# What each HTTP route is for. A route the code serves without an entry here fails the docs
# test, so a new endpoint cannot ship undocumented.
ROUTE_NOTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): '200 `{"healthy": true, "reason": ""}`, or 503 with the reason (stale bars, '
    "degraded streams, failures in a row)",
    ("GET", "/status"): "the daemon's state as JSON: streams, models (and shadow mode), symbols, positions, "
    "last decision and signal, outbox depth, retrain (`sigd status` prints it)",
    ("GET", "/metrics"): "Prometheus text exposition (every metric below)",
    ("POST", "/pause"): "stop new signals and orders (`?symbol=ETH/USDT`, or every symbol); bearer token",
    ("POST", "/resume"): "signals again (also lifts a drawdown halt); `?symbol=` optional; bearer token",
    ("POST", "/flat"): "close positions now (`?symbol=` optional); bearer token",
    ("POST", "/retrain"): "run the nightly retrain now; bearer token",
    ("GET", "/"): "the dashboard page",
    ("GET", "/ui/{name}"): "the dashboard's script, style sheet and vendored chart library",
    ("GET", "/api/snapshot"): "the dashboard's snapshot (`?tf=1m`): every symbol, health, models, positions",
    ("GET", "/api/chart"): "one symbol's candles and markers (`?symbol=ETH/USDT&tf=1h`)",
    ("GET", "/ws/events"): "websocket: a snapshot, then every domain event as it is committed (`?tf=1m`)",
    ("GET", "/session"): 'whether the data needs a session here (`{"required": true, "active": false}` beyond loopback)',
    ("POST", "/session"): "open a session with the bearer token: an HttpOnly, SameSite=Strict cookie for the page",
    ("DELETE", "/session"): "close this page's session",
}

# Outbox alert types (`EventSink.publish(type, ...)`) and what they announce. Every literal
# type found in the code needs a line here (the docs test checks it).
ALERT_NOTES: dict[str, str] = {
    "signal": "a committed signal: symbol, side, confidence, price, bar_ts, strategy, reasons, model versions, "
    "latency_ms (id `signal-<row id>`)",
    "order": "an order's status change (id `order-<client order id>-<status>`)",
    "fill": "a fill with its position (id `fill-<client order id>`)",
    "error": "something an operator must know: `kind` says what (`drawdown_halt`, `model_not_validated`, "
    "`model_demoted`, a failed retrain, ...)",
    "retrain": "a retrain run ended: promoted or rejected, with both scores",
    "gate": "the live gate promoted a model from shadow mode or demoted it on its shadow ledger's record "
    "(`kind`: `model_promoted` / `model_demoted`; `why` and `figures`; id `gate-<model>-<version>-<verdict>-<bar_ts>`)",
    "daily_summary": "the day's PnL, positions and live model scores (id `daily_summary:<date>`)",
}


# --- small helpers ---------------------------------------------------------------------------


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _code(text: Any) -> str:
    """Inline code safe inside a table cell (backticks in the value get a longer fence)."""
    s = str(text).replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# --- the CLI ---------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """Name -> (sub-parser, help) of a parser's sub-commands, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return {name: (p, helps.get(name, "")) for name, p in action.choices.items()}
    return {}


def _flag_default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.default is None or action.default == argparse.SUPPRESS:
        return ""
    if isinstance(action.default, list) and not action.default:
        return ""
    return _code(action.default)


def _flag_value(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices:
        return " {" + ",".join(str(c) for c in action.choices) + "}"
    metavar = action.metavar or action.dest.upper()
    if action.nargs in ("+", "*"):
        return f" {metavar} ..."
    return f" {metavar}"


def cli_commands() -> dict[str, argparse.ArgumentParser]:
    """Every `sigd` sub-command and its parser."""
    from daemon.service.cli import build_parser

    return {name: p for name, (p, _) in _subcommands(build_parser()).items()}


def cli_page() -> str:
    """Every `sigd` command and flag, from the argparse tree."""
    from daemon.service.cli import COMMANDS, build_parser

    parser = build_parser()
    commands = _subcommands(parser)
    lines = [
        "# Command line",
        "",
        GENERATED_NOTE,
        "",
        "`sigd COMMAND [flags]` (also `python -m daemon COMMAND`). A wrong flag value is one line on "
        "stderr naming the flag and exit code 2, never a traceback; `sigd COMMAND --help` prints the same "
        "flags.",
        "",
        _table(
            ["command", "what it does", "implemented in"],
            [
                [f"[`{name}`](#sigd-{name})", _cell(help_), _code(COMMANDS.get(name, "?"))]
                for name, (_, help_) in commands.items()
            ],
        ),
        "",
    ]
    for name, (sub, help_) in commands.items():
        lines += [f"## sigd {name}", "", _cell(help_[:1].upper() + help_[1:]) + ".", ""]
        lines += ["```text", sub.format_usage().strip().replace("usage: ", ""), "```", ""]
        rows = []
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = ", ".join(action.option_strings) or action.dest
            flag = f"`{names}{_flag_value(action)}`"
            need = "required" if action.required else _flag_default(action)
            rows.append([flag, need, _cell(action.help or "")])
        if rows:
            lines += [_table(["flag", "default", "meaning"], rows), ""]
    return "\n".join(lines)


# --- the config ------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return "table"
    if origin is typing.Literal:
        return " | ".join(repr(a).replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin is tuple:
        inner = args[0] if args else Any
        return f"array of {_type_name(inner)}" + ("s" if not dataclasses.is_dataclass(inner) else "")
    if origin is dict:
        return f"table of {_type_name(args[1])}"
    if tp is Any:
        return "any"
    return {float: "number", int: "integer", bool: "boolean", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _toml(value: Any) -> str:
    """A default as it would be written in config.toml."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.replace(str(ROOT) + "/", "")  # a path inside the checkout, shown relative to it
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "(unset)"
    return str(value)


@functools.cache
def _field_comments(cls: type) -> dict[str, str]:
    """Per field of a dataclass: its trailing comment, or the comment lines just above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        text = [comments[node.end_lineno]] if node.end_lineno in comments else []
        if not text:
            above: list[str] = []
            n = node.lineno - 1
            while n >= 1 and n in comments and lines[n - 1].lstrip().startswith("#"):
                above.insert(0, comments[n])
                n -= 1
            text = above
        out[node.target.id] = " ".join(text)
    return out


def _message(node: ast.expr) -> str:
    """A `require` message as a person reads it: f-string holes shown as `{...}`."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.FormattedValue):
                parts.append("{" + ast.unparse(v.value) + "}")
            else:
                parts.append(str(getattr(v, "value", "")))
        return "".join(parts)
    return ast.unparse(node)


def _key_of(node: ast.expr, loops: dict[str, list[str]]) -> list[str]:
    """The field names an `f"{key}.NAME..."` argument of `require` refers to (loop names expanded)."""
    if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
        return []
    first, rest = node.values[0], node.values[1:]
    if not (isinstance(first, ast.FormattedValue) and isinstance(first.value, ast.Name) and first.value.id == "key"):
        return []
    if isinstance(rest[0], ast.Constant) and isinstance(rest[0].value, str) and rest[0].value.startswith("."):
        name = rest[0].value[1:].split(".")[0].split("[")[0]
        if name:
            return [name]
        if len(rest) > 1 and isinstance(rest[1], ast.FormattedValue) and isinstance(rest[1].value, ast.Name):
            return loops.get(rest[1].value.id, [])
    return []


@functools.cache
def _limits(cls: type) -> dict[str, list[str]]:
    """Per field: the messages of the `require(...)` calls in the section's `check()`."""
    check = cls.__dict__.get("check")
    if check is None:
        return {}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(check)))
    except (OSError, TypeError, SyntaxError):
        return {}
    out: dict[str, list[str]] = {}

    def walk(node: ast.AST, loops: dict[str, list[str]]) -> None:
        if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple):
            names = [e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            loops = {**loops, node.target.id: names}
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_require", "require") and len(node.args) >= 3:
            why = node.args[2]
            text = _message(why)
            for name in _key_of(node.args[1], loops):
                if text not in out.setdefault(name, []):
                    out[name].append(text)
        for child in ast.iter_child_nodes(node):
            walk(child, loops)

    walk(tree, {})
    return out


def config_fields(cls: Any = None, prefix: str = "") -> Iterator[tuple[str, type, dataclasses.Field[Any]]]:
    """(dotted key, owning dataclass, field) of every config key, sections and tables included."""
    from daemon.config import Config

    cls = cls or Config
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if cls is Config and f.name == "source":
            continue  # the file it came from, not a key
        key = f"{prefix}{f.name}"
        yield key, cls, f
        tp = hints[f.name]
        args = typing.get_args(tp)
        inner = (args[0] if typing.get_origin(tp) is tuple else args[-1]) if args else tp
        if dataclasses.is_dataclass(tp):
            yield from config_fields(tp, key + ".")
        elif dataclasses.is_dataclass(inner):
            sub = f"{key}[]." if typing.get_origin(tp) is tuple else f'{key}."X/Y".'
            yield from config_fields(inner, sub)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_page() -> str:
    """Every config key: type, default, limits and the comment beside it in the code."""
    from daemon.config import Config
    from daemon.typedtoml import ALLOW_NONFINITE

    lines = [
        "# Configuration keys",
        "",
        GENERATED_NOTE,
        "",
        "`config.toml` is loaded once into frozen dataclasses (`daemon/config.py`, `daemon/tradingconfig.py`, "
        "`daemon/alertsconfig.py`, through `daemon/typedtoml.py`). An unknown key, a wrong type or a value "
        "outside its limits stops start-up (and `sigd check`) with exit code 2 and one line naming the file "
        "and the key. Numbers must be finite unless a key says otherwise. Relative paths are relative to the "
        "config file. Secrets are never in the file: the `*_env` keys name environment variables.",
        "",
    ]
    hints_cache: dict[type, dict[str, Any]] = {}
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        sec_type = typing.get_type_hints(Config)[section.name]
        rows: list[list[str]] = []
        for key, owner, f in config_fields(Config):
            if key != section.name and not key.startswith(section.name + ".") and not key.startswith(section.name + "["):
                continue
            if key == section.name and dataclasses.is_dataclass(sec_type):
                continue
            hints = hints_cache.setdefault(owner, typing.get_type_hints(owner))
            tp = hints[f.name]
            note = _field_comments(owner).get(f.name, "")
            limits = _limits(owner).get(f.name, [])
            if f.metadata.get(ALLOW_NONFINITE):
                limits = limits + ["may be inf or nan"]
            default = _default(f)
            shown = (
                ""
                if dataclasses.is_dataclass(tp)
                else (_code(_toml(default)) if default is not dataclasses.MISSING else "required")
            )
            rows.append([f"`{key}`", _cell(_type_name(tp)), shown, _cell("; ".join(limits)), _cell(note)])
        doc = inspect.getdoc(sec_type) if dataclasses.is_dataclass(sec_type) else None
        title = f"[{section.name}]" if dataclasses.is_dataclass(sec_type) else f'[{section.name}."X/Y"]'
        lines += [f"## {title}", ""]
        if doc:
            lines += [_cell(doc), ""]
        elif typing.get_origin(sec_type) is dict:
            inner = typing.get_args(sec_type)[1]
            lines += [_cell(inspect.getdoc(inner) or ""), ""]
        lines += [_table(["key", "type", "default", "limits", "what"], rows), ""]
    return "\n".join(lines)


# --- HTTP API and events -----------------------------------------------------------------------


def http_routes() -> list[tuple[str, str, str]]:
    """(method, path, handler name) of every route the API server serves."""
    from daemon.service.api import Api

    service = types.SimpleNamespace(read=types.SimpleNamespace())
    app = Api(service).app()
    out: list[tuple[str, str, str]] = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or "?"
        if path.startswith("/ui/") and path != "/ui/{name}":
            key = "/ui/{name}"
            if any(r[1] == key for r in out):
                continue
            path = key
        out.append((route.method, path, getattr(route.handler, "__qualname__", "")))
    return out


def event_classes() -> list[Any]:
    """Every typed domain event of `daemon.events`."""
    from daemon import events

    return [
        c
        for _, c in inspect.getmembers(events, inspect.isclass)
        if issubclass(c, events.Event) and c is not events.Event and c.__module__ == events.__name__
    ]


def _python_files(*packages: str) -> Iterator[Path]:
    for pkg in packages:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def alert_types() -> dict[str, list[str]]:
    """Alert type -> the files that publish it (literal `*.publish("type", ...)` calls)."""
    out: dict[str, list[str]] = {}
    for path in _python_files("daemon"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "publish"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                rel = str(path.relative_to(ROOT))
                if rel not in out.setdefault(node.args[0].value, []):
                    out[node.args[0].value].append(rel)
    return out


def http_page() -> str:
    """Routes, the typed events of the bus, the alert types of the outbox."""
    lines = [
        "# HTTP API and events",
        "",
        GENERATED_NOTE,
        "",
        "The API server listens on `[api] host:port` (127.0.0.1:8787 by default). POST actions need "
        "`Authorization: Bearer $SIGD_API_TOKEN` (the variable `[api] token_env` names); see "
        "[HTTP API and dashboard](../operations/http-api.md) for the rules.",
        "",
        "## Routes",
        "",
    ]
    rows = [
        [method, f"`{path}`", _cell(ROUTE_NOTES.get((method, path), "**undocumented**")), _code(handler)]
        for method, path, handler in http_routes()
    ]
    lines += [_table(["method", "path", "what", "handler"], rows), ""]
    lines += [
        "## Domain events (the bus)",
        "",
        "Published on the in-process bus (`daemon/events.py`) after the commit of what they describe; the "
        'dashboard\'s `/ws/events` sends them as JSON `{"kind": ..., fields...}`, the signal websocket '
        "sends the `alert` events' envelopes.",
        "",
    ]
    rows = []
    for cls in event_classes():
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        rows.append([f"`{cls.kind}`", f"`{cls.__name__}`", _cell(inspect.getdoc(cls) or ""), fields])
    lines += [_table(["kind", "class", "what", "fields"], rows), ""]
    lines += [
        "## Alert types (the outbox)",
        "",
        "`EventSink.publish(type, payload, event_id)` writes one outbox row per channel that takes the type; "
        'webhooks receive `{"id", "type", "created_ms", ...payload}`.',
        "",
    ]
    rows = [
        [f"`{t}`", _cell(ALERT_NOTES.get(t, "**undocumented**")), ", ".join(f"`{p}`" for p in files)]
        for t, files in sorted(alert_types().items())
    ]
    lines += [_table(["type", "what", "published by"], rows), ""]
    return "\n".join(lines)


# --- metrics ---------------------------------------------------------------------------------


def _import_all(package: str) -> None:
    """Import every module of `package` (metrics are registered at import)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def metric_rows() -> list[tuple[str, str, str]]:
    """(name, kind, help) of every metric the daemon registers."""
    from daemon.metrics import REGISTRY

    _import_all("daemon")
    return sorted((m.name, m.kind, m.help) for m in REGISTRY._metrics.values())


def metrics_page() -> str:
    """Every metric of `/metrics`."""
    lines = [
        "# Metrics",
        "",
        GENERATED_NOTE,
        "",
        "Served at `GET /metrics` in the Prometheus text format (prometheus-client). Labels are given at "
        'each call; a series labelled by `stream` ("ETH/USDT 1m") also carries `symbol`. '
        "`docs/grafana-sigd.json` is a Grafana dashboard over them "
        "([download](../grafana-sigd.json)).",
        "",
        _table(["metric", "type", "what"], [[f"`{n}`", k, _cell(h)] for n, k, h in metric_rows()]),
        "",
    ]
    return "\n".join(lines)


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/config.md": config_page,
    "reference/http.md": http_page,
    "reference/metrics.md": metrics_page,
}


def main(argv: list[str]) -> int:
    """Write the generated pages under the directory given (to read them without a build)."""
    if len(argv) != 1:
        print("usage: python docs/gen_reference.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for rel, make in PAGES.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make(), encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
