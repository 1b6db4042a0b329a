"""Reports (HTML + PNG figures, logged to MLflow) and experiment cards of a study.

matplotlib is imported only here, when a report is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hpo.report._data import StudyData
from hpo.report._style import Plot
from hpo.report.card import write_card
from hpo.settings import Settings

__all__ = ["Plot", "Report", "StudyData", "write_card", "write_report"]

REPORT_DIR = "report"
"""Default folder under the study's directory, and the MLflow artifact path."""


@dataclass
class Report:
    html: Path
    plots: list[Plot]
    mlflow_run_id: str | None
    """The parent run the files were logged to (``None``: not logged)."""


def _figures() -> list[Callable[[StudyData, Path], Plot]]:
    from hpo.report.curves import curves_figure
    from hpo.report.params import importance_figure, parallel_figure
    from hpo.report.pareto import pareto_figure
    from hpo.report.progress import hypervolume_figure

    return [pareto_figure, hypervolume_figure, parallel_figure, curves_figure,
            importance_figure]


def write_report(
    name: str, settings: Settings, *, out: Path | None = None, log: bool = True
) -> Report:
    """Write ``report.html`` and its PNG figures into ``out`` (default: the study's
    ``report/`` folder) and log them to the study's parent MLflow run under ``report/``."""
    from hpo.report.html import render

    data = StudyData.load(name, settings)
    folder = out or data.study_dir / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plots = [figure(data, folder) for figure in _figures()]
    html = folder / "report.html"
    html.write_text(render(data, plots))
    run_id = None
    if log and data.parent_run_id is not None and data.parent_tags:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri)
        for path in [html, *(p.path for p in plots if p.path is not None)]:
            client.log_artifact(data.parent_run_id, str(path), REPORT_DIR)
        run_id = data.parent_run_id
    return Report(html, plots, run_id)
