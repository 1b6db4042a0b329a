"""Where trials run: Ray Tune (:mod:`~hpo.execution.ray_backend`) or this process
(:mod:`~hpo.execution.local_backend`), driven by a searcher over the Optuna study
(:mod:`~hpo.execution._searcher`).

Nothing is imported here, so that reaching Ray (:mod:`~hpo.execution.ray_connection`)
does not load Ray Tune: a study starts Ray first and imports the rest while it starts.
"""
