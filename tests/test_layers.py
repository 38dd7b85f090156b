"""Data flows one way: a package imports only the layers below it.

bytes -> protocol (pure) -> server (connection, actors) -> billing -> storage.
The client SDK and the loadtest are built on the protocol only; the CLI
module is the composition root and may start the loadtest.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = {"protocol", "storage", "billing", "server", "client", "loadtest"}

#: package -> packages of ours it may import
ALLOWED: dict[str, set[str]] = {
    "protocol": set(),
    "storage": set(),
    "billing": {"storage"},
    "server": {"protocol", "storage", "billing"},
    "client": {"protocol"},
    "loadtest": {"client", "protocol"},
}
#: single modules with an extra, deliberate edge
EXCEPTIONS: dict[str, set[str]] = {"server/cli.py": {"loadtest"}}
#: third-party modules the pure protocol layer must never import
IO_MODULES = {"asyncio", "aiohttp", "asyncpg", "redis", "websockets", "socket", "uvloop", "stripe"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_packages_import_only_lower_layers() -> None:
    violations: list[str] = []
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            checked += 1
            rel = path.relative_to(ROOT).as_posix()
            permitted = allowed | {package} | EXCEPTIONS.get(rel, set())
            for root in imported_roots(path) & OURS:
                if root not in permitted:
                    violations.append(f"{rel} imports {root}")
    assert checked > 20
    assert not violations, "\n".join(violations)


def test_protocol_is_pure() -> None:
    for path in sorted((ROOT / "protocol").rglob("*.py")):
        bad = imported_roots(path) & IO_MODULES
        assert not bad, f"{path.name} imports {bad}"


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import asyncio\nfrom storage.db import Conn\n\ndef f():\n    import server.app\n"
    )
    assert imported_roots(sample) == {"asyncio", "storage", "server"}
