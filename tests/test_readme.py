"""The README's install and test commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def _first_command_under(heading: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", section, re.S)[1].strip()  # type: ignore[index]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install = _first_command_under("Install")
    assert "torch==2.13.0" in install
    assert install in ci
    assert _first_command_under("Test") in ci
