"""README tables generated from the code tables (config, error codes, close codes, limits).

``python -m server.docs --write`` rewrites the marked sections of README.md;
a test fails when README drifts from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from protocol.codes import CLOSES, ERRORS, may_reconnect
from server import limits
from server.config import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def error_table() -> str:
    lines = ["| Code | HTTP | Meaning |", "| --- | --- | --- |"]
    for code, info in ERRORS.items():
        lines.append(f"| `{code.value}` | {info.http_status} | {info.description} |")
    return "\n".join(lines)


def close_table() -> str:
    lines = ["| Code | Name | Reconnect? | Meaning |", "| --- | --- | --- | --- |"]
    for code, (reason, description) in CLOSES.items():
        again = "yes" if may_reconnect(int(code)) else "no"
        lines.append(f"| {int(code)} | {reason} | {again} | {description} |")
    return "\n".join(lines)


def limits_table() -> str:
    lines = ["| Limit | Rate (per second) | Burst |", "| --- | --- | --- |"]
    s = limits.SOCKET_RATE
    lines.append(f"| any request, per socket | {s.per_second:g} | {s.burst:g} |")
    for kind, rate in limits.REQUEST_LIMITS.items():
        lines.append(f"| `{kind}`, per user | {rate.per_second:g} | {rate.burst:g} |")
    lines.append("| new sockets, per address | `DIGIS_HANDSHAKE_RATE` | `DIGIS_HANDSHAKE_BURST` |")
    lines.append(
        "| open sockets per address | - | `DIGIS_MAX_SOCKETS_PER_ADDRESS` (then HTTP 429) |"
    )
    lines.append(f"| refusals in a row before close 4003 | - | {limits.ABUSE_STRIKES} |")
    return "\n".join(lines)


SECTIONS = {
    "config-table": markdown_table,
    "error-codes": error_table,
    "close-codes": close_table,
    "limits-table": limits_table,
}


def render_readme(text: str) -> str:
    """``text`` with every generated section replaced by its current content."""
    for name, build in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- {name}:begin -->\n)(?:.*?\n)?(<!-- {name}:end -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"README has no {name} markers")
        text = pattern.sub(lambda m, b=build: m.group(1) + b() + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    current = README.read_text("utf-8")
    fresh = render_readme(current)
    if "--write" in args:
        README.write_text(fresh, "utf-8")
        print("README.md tables regenerated")
        return 0
    if fresh != current:
        print("README.md tables are stale: run `python -m server.docs --write`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
