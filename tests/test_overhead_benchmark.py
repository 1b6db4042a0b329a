"""benchmarks/overhead.py: the measurement itself (bare Optuna peer: no Ray, seconds) and
the headline ratios and targets computed from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import overhead  # noqa: E402


def test_measures_the_time_spent_inside_the_objective(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--peers", "optuna",
         "--trials", "6", "--sleep", "0.2", "--out", str(out)],
        check=True, cwd=tmp_path, timeout=300,
    )
    (row,) = json.loads(out.read_text())["runs"]
    assert row["peer"] == "optuna" and row["trials"] == 6
    assert row["sampler"] is None  # --sampler is hpo's (its run.sampler)
    # 6 trials of 0.2 s, 2 at a time: at least 0.6 s of wall time, workers mostly busy
    assert row["wall_s"] >= 0.6
    assert 0.3 < row["utilization"] <= 1.0
    assert 0.3 < row["steady_utilization"] <= 1.0
    assert row["overhead_ms"] >= row["steady_overhead_ms"]
    # the fixed cost, before the first trial and after the last, is part of the wall time
    assert row["start_s"] >= 0 and row["stop_s"] >= 0
    assert row["start_s"] + row["stop_s"] < row["wall_s"] - 0.5  # 3 rounds of 0.2 s


def test_ratios_and_targets() -> None:
    def row(peer: str, sleep: float, overhead_ms: float, util: float) -> dict[str, object]:
        return {"peer": peer, "sleep_s": sleep, "overhead_ms": overhead_ms,
                "steady_overhead_ms": overhead_ms / 2, "utilization": util,
                "steady_utilization": min(1.0, util * 1.02)}

    rows = [row("hpo", 0.0, 180.0, 0.0), row("optuna", 0.0, 90.0, 0.0),
            row("ray", 0.0, 1800.0, 0.0), row("hpo", 5.0, 300.0, 0.94)]
    table = overhead.ratios(rows)
    assert [(r["vs"], r["overhead_x"]) for r in table] == [("optuna", 2.0), ("ray", 0.1)]
    assert overhead.targets(rows) == {
        "steady_overhead_under_100ms": True, "steady_utilization_at_5s_over_95pct": True,
        "overhead_under_100ms": False, "utilization_at_5s_over_95pct": False,
    }
