"""The real ``hpo dashboard`` command and headless Chromium on its study page.

Shared by tests/test_dashboard.py and docs/screenshots.py (not part of the hpo package:
hpo never imports Playwright).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
PARETO_PLOT = "graph-pareto-front"
"""Element id of optuna-dashboard's Pareto-front plot (a plotly graph div)."""

# optuna-dashboard 0.21 draws the Pareto front as four plotly traces, told apart by the
# label in their hover template: trials outside the selection or not COMPLETE (their
# coordinates are null, so nothing is drawn), infeasible COMPLETE trials (grey), feasible
# dominated ones ("Trial", or "Feasible Trial" when some are infeasible) and the feasible
# Pareto-optimal ones ("Best Trial").
KINDS = {
    "Unselected Trial": "not_drawn",
    "Infeasible Trial": "infeasible",
    "Feasible Trial": "feasible_dominated",
    "Trial": "feasible_dominated",
    "Best Trial": "front",
}

_COUNT_POINTS = """(id) => {
  const plot = document.getElementById(id);
  return Array.from(plot.querySelectorAll('g.trace.scatter')).map(g => {
    const trace = g.__data__[0].trace;
    const label = (trace.hovertemplate.match(/<extra>(.*)<\\/extra>/) || [])[1];
    return [label, g.querySelectorAll('path.point').length];
  });
}"""


class Dashboard:
    """A running ``hpo dashboard`` process and the URL it printed."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.stderr = ""

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as a user would; returns the exit code (stderr kept in ``.stderr``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        _, self.stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode


@contextmanager
def running_dashboard(
    *args: str, cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> Iterator[Dashboard]:
    """Start ``python -m hpo dashboard ARGS``; yields once it printed its URL (its socket is
    listening by then) and stops it with SIGINT on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", *args],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dashboard = Dashboard(process, "")
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        dashboard.url = process.stdout.readline().strip() if ready else ""
        if not dashboard.url:
            dashboard.stop()
            raise RuntimeError(f"hpo dashboard printed no URL: {dashboard.stderr.strip()}")
        yield dashboard
    finally:
        if process.poll() is None:
            dashboard.stop()


@contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def open_pareto_front(page: Any, url: str, timeout: float = 60) -> dict[str, int]:
    """Open a study page and wait for its Pareto-front plot; returns the points drawn, by
    kind (``front``, ``feasible_dominated``, ``infeasible``, ``not_drawn``)."""
    page.goto(url, timeout=timeout * 1000)
    # All four traces set (plotly draws no group for an empty one), and drawn.
    page.wait_for_function(
        f"document.getElementById({PARETO_PLOT!r})?.data?.length === 4 && "
        f"document.querySelector('#{PARETO_PLOT} .scatterlayer') !== null",
        timeout=timeout * 1000,
    )
    counts = dict.fromkeys(KINDS.values(), 0)
    for label, points in page.evaluate(_COUNT_POINTS, PARETO_PLOT):
        counts[KINDS[label]] += points
    return counts


def screenshot_pareto_front(page: Any, path: Path) -> Path:
    """PNG of the dashboard card holding the Pareto-front plot (title, axes pickers, plot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    card = page.locator(".MuiCard-root", has=page.locator(f"#{PARETO_PLOT}"))
    card.first.screenshot(path=str(path), animations="disabled")
    return path


def artifacts_dir(repo_root: Path) -> Path:
    """Where test runs keep screenshots: ``$HPO_TEST_ARTIFACTS`` or ``test-artifacts/``."""
    return Path(os.environ.get("HPO_TEST_ARTIFACTS") or repo_root / "test-artifacts")
