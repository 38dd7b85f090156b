"""README's generated tables match the code, and its Quick start is as promised."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any

from server.docs import README, main, render_readme
from tests.conftest import RunningServer


def test_readme_tables_are_current() -> None:
    text = README.read_text("utf-8")
    assert render_readme(text) == text, "run `python -m server.docs --write`"
    assert main([]) == 0


def test_quick_start_has_exactly_two_commands() -> None:
    text = README.read_text("utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)
    assert len(commands) == 2
    serve, test = commands
    assert "digis serve" in serve and "pip install" in serve
    assert "pytest" in test and "pip install" in test


async def test_quick_start_python_example_runs(server: RunningServer) -> None:
    """The README's first SDK session, pointed at a test server, prints a pong and a balance."""
    text = README.read_text("utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)\n```", section, flags=re.DOTALL)
    assert "asyncio.run(main())" in example
    source = example.replace("asyncio.run(main())", "")
    source = source.replace("http://127.0.0.1:8080", server.http_url)
    source = source.replace("ws://127.0.0.1:8080/ws", server.ws_url)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        await namespace["main"]()
    lines = printed.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Pong(") and lines[1].startswith("Balance(")
