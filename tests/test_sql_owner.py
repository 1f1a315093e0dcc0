"""daemon/store/ is the only package that speaks SQL: no other module of the product holds an SQL
statement in a string or reaches into the store's connection. The allow-list holds today's
remaining offenders with the reason each is still there; it can only shrink (an entry whose
file no longer offends fails too, so the fix removes it)."""

from __future__ import annotations

import ast
import re

from tests.conftest import REPO

PACKAGES = ("daemon", "pipeline", "models", "strategies", "bench")
OWNER = "daemon/store/"
ALLOWED: dict[str, str] = {}

SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+(OR\s+\w+\s+)?\[?\w+\]?\s+SET|DELETE\s+FROM"
    r"|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX|TRIGGER|VIEW)|ALTER\s+TABLE|DROP\s+(TABLE|INDEX|TRIGGER)|PRAGMA\s+\w+"
    r"|BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED|TRANSACTION)|SAVEPOINT\s+\w+)",
    re.DOTALL,
)
# Reaching past the store's methods into its connection: store.db.execute(...), .db.conn, ...
CONNECTION = {"conn", "execute", "executemany", "executescript", "query"}


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def offences(source: str) -> list[str]:
    """What in `source` speaks SQL: statements in strings (f-strings' text included, docstrings
    not) and attribute chains into a store's connection (`x.db.execute`, `x.db.conn`)."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if SQL.search(node.value):
                found.append(f"line {node.lineno}: SQL {node.value[:60]!r}")
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if SQL.search(text):
                found.append(f"line {node.lineno}: SQL {text[:60]!r}")
        elif isinstance(node, ast.Attribute) and node.attr in CONNECTION:
            inner = node.value
            if isinstance(inner, ast.Attribute) and inner.attr == "db":
                found.append(f"line {node.lineno}: .db.{node.attr}")
    return found


def _modules() -> dict[str, list[str]]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if not rel.startswith(OWNER):
                out[rel] = offences(path.read_text())
    return out


def test_only_the_store_speaks_sql() -> None:
    speaking = {rel: found for rel, found in _modules().items() if found}
    unexpected = {rel: found for rel, found in speaking.items() if rel not in ALLOWED}
    assert not unexpected, f"SQL outside {OWNER} (move it into a store method): {unexpected}"
    cured = sorted(set(ALLOWED) - set(speaking))
    assert not cured, f"no SQL left in {cured}: remove them from ALLOWED (the list only shrinks)"


def test_every_allowed_offender_says_why() -> None:
    assert all(reason.strip() for reason in ALLOWED.values())
    assert all((REPO / rel).exists() for rel in ALLOWED)


def test_the_check_sees_sql_however_it_is_written() -> None:
    caught = [
        'db.execute("SELECT 1 FROM decisions WHERE symbol=?")',
        'sql = f"INSERT OR IGNORE INTO {table} (a) VALUES (?)"',
        'x = "UPDATE orders SET status=? WHERE id=?"',
        'x = "DELETE FROM outbox"',
        'x = """CREATE UNIQUE INDEX uq ON t (a)"""',
        'x = "PRAGMA user_version"',
        "store.db.conn.in_transaction",
        "rows = self.store.db.query('...')",
    ]
    for line in caught:
        assert offences(line), line
    passed = [
        '"""Selects the rows from the store (SELECT ... FROM in a docstring is prose)."""',
        'log.info("order_update", status="filled")',
        "self.store.orders(UNRESOLVED)",
        'x = "select a model from the registry"',
        "broker.execute(order)",
    ]
    for line in passed:
        assert not offences(line), line
