"""Screenshot of a study's Pareto front in optuna-dashboard, for the README.

    PYTHONPATH=. python docs/screenshots.py --home ../d200-storage --study distill-squad \
        --out docs/images/dashboard-pareto.png

Copies ``--home`` (an ``HPO_HOME``: optuna.db, ...) to a temporary directory first, so the
original is never touched, then runs the real ``hpo dashboard`` on the copy and drives
headless Chromium with the helper the tests use (tests/support/dashboard_browser.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from dashboard_browser import (  # noqa: E402
    browser_page,
    open_pareto_front,
    running_dashboard,
    screenshot_pareto_front,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="HPO_HOME holding the study")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/images/dashboard-pareto.png")
    parser.add_argument("--width", type=int, default=1100, help="browser window width (px)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(args.home, home, ignore=shutil.ignore_patterns("ray", "cache"))
        env = {**os.environ, "HPO_HOME": str(home), "PYTHONPATH": str(ROOT)}
        env.pop("HPO_STORAGE", None)
        with (
            running_dashboard(args.study, "--port", "0", cwd=Path(tmp), env=env) as board,
            browser_page(width=args.width) as page,
        ):
            drawn = open_pareto_front(page, board.url)
            screenshot_pareto_front(page, args.out)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB): points drawn {drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
