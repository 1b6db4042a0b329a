"""benchmarks/early_stopping.py: how its summary compares schedulers with ``none``;
benchmarks/rank_agreement.py: how early reports are judged against the end."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import median_interval  # noqa: E402
from early_stopping import compare  # noqa: E402
from rank_agreement import agreement  # noqa: E402

from hpo.spec import Goal  # noqa: E402


def rows(kept: list[float]) -> list[dict[str, object]]:
    """A none and an moasha run per seed: moasha spends a third of the compute and keeps
    ``kept[seed]`` of none's hypervolume."""
    out: list[dict[str, object]] = []
    for seed, fraction in enumerate(kept):
        out.append({"scheduler": "none", "seed": seed, "compute_steps": 1200,
                    "hypervolume": 2.0, "wall_s": 1.0})
        out.append({"scheduler": "moasha", "seed": seed, "compute_steps": 400,
                    "hypervolume": 2.0 * fraction, "wall_s": 1.0})
    return out


def test_the_summary_gives_the_median_over_seeds_and_how_far_it_may_move() -> None:
    kept = [0.85, 0.92, 0.95, 0.97, 0.98, 0.99, 1.0, 1.02, 1.05, 1.1]
    moasha = next(r for r in compare(rows(kept)) if r["scheduler"] == "moasha")
    assert moasha["compute_saved_x"] == 3.0
    assert moasha["hypervolume_vs_none"] == statistics.median(kept)
    assert moasha["hypervolume_vs_none_min"] == 0.85
    low, high = moasha["hypervolume_vs_none_95"]
    assert low < statistics.median(kept) < high
    assert low >= 0.9 and high <= 1.05  # a median, not the range of the seeds


def test_the_held_out_hypervolume_is_compared_the_same_way_when_measured() -> None:
    measured = rows([0.95, 0.97, 0.99])
    for row, held_out in zip(measured, [2.0, 1.98, 2.0, 2.0, 2.0, 2.02], strict=True):
        row["hypervolume_held_out"] = held_out
    moasha = next(r for r in compare(measured) if r["scheduler"] == "moasha")
    assert moasha["hypervolume_vs_none"] == 0.97
    assert moasha["held_out_vs_none"] == 1.0 and moasha["held_out_vs_none_min"] == 0.99
    assert "held_out_vs_none" not in compare(rows([0.97]))[1]  # not measured: no column


def test_more_seeds_of_the_same_spread_narrow_the_interval() -> None:
    few = [0.9, 0.95, 1.0, 1.05, 1.1]
    low, high = median_interval(few)
    many_low, many_high = median_interval(few * 8)
    assert many_high - many_low < high - low
    assert median_interval([0.97] * 6) == (0.97, 0.97)


EXACT, EXACT_MIN = Goal("exact", "maximize"), Goal("exact", "minimize")


def run(size: float, *exact: float) -> list[dict[str, float]]:
    return [{"exact": e, "num_params": size} for e in exact]


def test_rank_agreement_judges_early_reports_within_a_size() -> None:
    # within each size the students that lead at report 1 end last (the slow learners
    # end best), while the large ones lead the small ones throughout
    runs = [run(1e5, 62, 63, 64), run(1e5, 60, 66, 68), run(1e5, 56, 70, 76),
            run(1e5, 55, 72, 77), run(4e5, 80, 81, 82), run(4e5, 78, 83, 84),
            run(4e5, 76, 85, 86), run(4e5, 75, 86, 88)]
    first = agreement(runs, 1, EXACT, "num_params")
    assert first == {"report": 1, "spearman": -1.0, "trials": 8, "best_kept": 0.0, "groups": 2}
    second = agreement(runs, 2, EXACT, "num_params")
    assert second["spearman"] == 1.0 and second["best_kept"] == 1.0
    # pooled over sizes, report 1 looks informative: size dominates the ranking
    assert agreement(runs, 1, EXACT, None)["spearman"] > 0.5
    # a metric to minimize: the same agreement, its best trial the lowest at the end
    assert agreement(runs, 2, EXACT_MIN, "num_params")["spearman"] == 1.0
    assert agreement(runs, 1, EXACT_MIN, "num_params")["best_kept"] == 0.0
    # standing on another metric early (a loss: lower is better) against exact at the end:
    # here a loss that already orders each size's students as they end
    lossy = [[{**r, "loss": 100 - one[-1]["exact"]} for r in one] for one in runs]
    early = agreement(lossy, 1, EXACT, "num_params", early=Goal("loss", "minimize"))
    assert early["spearman"] == 1.0 and early["best_kept"] == 1.0
