"""Which samplers take tenths of a second per trial."""

from __future__ import annotations

import optuna


def is_slow(sampler: optuna.samplers.BaseSampler | None) -> bool:
    """Whether ``sampler`` takes tenths of a second or more per trial (GP), so that a
    driver with workers elsewhere asks it for the next trial while the running ones run
    (:mod:`hpo.execution._searcher`). A sampler says so with a ``slow`` attribute; one that
    wraps another (``auto``, the fallback on errors) asks this of the one it runs."""
    return bool(getattr(sampler, "slow", False))
