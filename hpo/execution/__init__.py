"""Where trials run: Ray Tune, driven by a searcher over the Optuna study."""

from hpo.execution._searcher import Observer, StudySearcher
from hpo.execution.local_backend import run_trials_locally
from hpo.execution.ray_backend import RayConnection, run_trials

__all__ = ["Observer", "RayConnection", "StudySearcher", "run_trials", "run_trials_locally"]
