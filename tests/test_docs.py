"""README's generated tables match the code, and its Quick start is as promised."""

from __future__ import annotations

import re

from server.docs import README, main, render_readme


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
