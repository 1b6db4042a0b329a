"""Study files: the declarative definition of a study, validated up front."""

from hpo.spec._constraints import Constraint
from hpo.spec._load import (
    assign,
    build_spec,
    bundled_study_dir,
    find_study_file,
    load_spec,
    parse_assignment,
)
from hpo.spec._model import (
    KEEP_MODELS,
    SCHEDULERS,
    DegenerateRule,
    Goal,
    InfeasibleStop,
    Parameter,
    Resources,
    Stopping,
    StudySpec,
)

__all__ = [
    "KEEP_MODELS",
    "SCHEDULERS",
    "Constraint",
    "DegenerateRule",
    "Goal",
    "InfeasibleStop",
    "Parameter",
    "Resources",
    "Stopping",
    "StudySpec",
    "assign",
    "build_spec",
    "bundled_study_dir",
    "find_study_file",
    "load_spec",
    "parse_assignment",
]
