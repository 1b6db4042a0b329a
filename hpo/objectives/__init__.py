"""The objective plug-in contract."""

from hpo.objectives._base import Objective, Reporter, TrialContext
from hpo.objectives._registry import available_objectives, resolve_objective

__all__ = ["Objective", "Reporter", "TrialContext", "available_objectives", "resolve_objective"]
