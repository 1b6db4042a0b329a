"""A driver killed (SIGKILL) while it asks the study for a trial: tests/test_crashes.py.

``python killed_in_ask.py STUDY_FILE COMMIT [--recover] [--host HOST]`` opens the study
in ./storage as ``hpo study`` does (with ``--recover``, closes the trials of dead drivers,
as a driver does before it asks), then asks for one trial and kills itself right after
the COMMIT-th storage transaction of that ask that wrote something (``0``: after the ask
returned). With HOST, the trial's driver is recorded as if it ran on that host. Nothing
in hpo is changed: the kill follows SQLAlchemy's commits.
"""

from __future__ import annotations

import argparse
import os
import signal

import sqlalchemy.orm
from sqlalchemy import event

from hpo import trials
from hpo.recovery import Recovery
from hpo.runner import load_study, open_storage
from hpo.settings import Settings
from hpo.spec import load_spec


def main(study_file: str, commit: int, recover: bool, host: str | None) -> None:
    spec = load_spec(study_file, [("run.heartbeat_interval", 1)])
    settings = Settings.resolve()
    settings.prepare()
    study, _ = load_study(spec, open_storage(settings, create=True, spec=spec))
    if recover:
        Recovery(study, spec).recover(force=True)
    if host is not None:
        trials.driver_id = lambda: f"{host}:1"  # type: ignore[assignment]
    commits = 0

    def wrote(session: sqlalchemy.orm.Session, context: object) -> None:
        session.info["wrote"] = True

    def committed(session: sqlalchemy.orm.Session) -> None:
        nonlocal commits
        commits += bool(session.info.pop("wrote", False))  # reads commit too
        if commit and commits == commit:
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(sqlalchemy.orm.Session, "after_flush", wrote)
    event.listen(sqlalchemy.orm.Session, "after_commit", committed)
    trials.ask(study, spec)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("study_file")
    parser.add_argument("commit", type=int)
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--host")
    args = parser.parse_args()
    main(args.study_file, args.commit, args.recover, args.host)
