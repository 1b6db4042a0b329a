"""Bad input: one clear line naming file, field and value; exit 2; nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.cli import main

GOOD = """\
objective: {name: bnh}
parameters:
  x: {type: float, low: 0, high: 5}
  y: {type: float, low: 0, high: 3}
objectives:
  - {metric: f1, direction: minimize}
  - {metric: f2, direction: minimize}
constraints: ["c1 <= 25"]
run: {trials: 4}
"""


def _study_file(workdir: Path, text: str) -> str:
    path = workdir / "study.yaml"
    path.write_text(text)
    return str(path)


CASES = [
    # (study file text or None for GOOD, extra args, expected fragments of the message)
    (GOOD, ["--study-name", "../escape"], ["study name '../escape'", "letters, digits"]),
    (GOOD.replace("run:", "runn:"), [], ["study.yaml", "runn", "unknown key"]),
    (
        GOOD.replace("low: 0, high: 5", "low: 6, high: 5"),
        [],
        ["parameters.x.low", "6", "greater than high 5"],
    ),
    (
        GOOD.replace("low: 0, high: 3", "low: zero, high: 3"),
        [],
        ["parameters.y.low", "'zero'", "expected a number"],
    ),
    (
        GOOD.replace('"c1 <= 25"', '"accuracy >= 0.5"'),
        [],
        ["constraints[0]", "unknown metric 'accuracy'", "f1, f2, c1, c2"],
    ),
    (
        GOOD.replace('"c1 <= 25"', '"c1 < 25; import os"'),
        [],
        ["constraints[0]", "not a constraint"],
    ),
    (
        GOOD.replace('"c1 <= 25"', '"c1 <= 25", "c1 >= 5", "c1 <= 30"'),
        [],
        ["constraints[2]", "'c1 <= 30' bounds c1 on the same side as constraints[0] 'c1 <= 25'"],
    ),
    (
        GOOD.replace("name: bnh", "name: nosuch"),
        [],
        ["objective.name", "unknown objective 'nosuch'"],
    ),
    (
        GOOD.replace("type: float, low: 0, high: 5", "type: floaty, low: 0, high: 5"),
        [],
        ["parameters.x.type", "'floaty'"],
    ),
    (
        GOOD.replace("metric: f2, direction: minimize", "metric: f2, direction: down"),
        [],
        ["objectives[1].direction", "'down'"],
    ),
    (
        GOOD.replace("objective: {name: bnh}", "objective: {name: bnh, args: {scale: 2}}"),
        [],
        ["objective.args.scale", "takes no argument"],
    ),
    (GOOD.replace("high: 5}", "high: 5"), [], ["study.yaml", "malformed YAML at line"]),
    (None, ["--trials", "0"], ["run.trials", "below the minimum 1"]),
    (None, ["--sampler", "cmaes"], ["run.sampler", "unknown sampler 'cmaes'"]),
    (None, ["--constraint", "f9 >= 1"], ["constraints[0]", "unknown metric 'f9'"]),
    (None, ["--max-retries", "-1"], ["run.max_retries", "-1 is below the minimum 0"]),
    (None, ["--set", "run.heartbeat_interval=0.5"], ["run.heartbeat_interval", "0.5"]),
    (None, ["--set", "run.startup_trials=0"], ["run.startup_trials", "below the minimum 1"]),
    (None, ["--set", "parameters.x.high=-1"], ["parameters.x.low", "greater than high -1"]),
    (None, ["--storage", "nosuchdb://host/x"], ["storage URL", "nosuchdb://host/x"]),
    (
        None,
        ["--storage", "postgresql://bob:hunter2@localhost:1/x", "--set", "run.trials=-3"],
        ["run.trials"],
    ),
]


@pytest.mark.parametrize(("text", "args", "fragments"), CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    text: str | None,
    args: list[str],
    fragments: list[str],
) -> None:
    path = _study_file(workdir, text or GOOD)
    assert main(["study", path, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err
    assert "hunter2" not in err
    assert sorted(p.name for p in workdir.iterdir()) == ["study.yaml"]  # no storage/


def test_unknown_study_name_lists_the_bundled_ones(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["study", "nosuchstudy"]) == 2
    err = capsys.readouterr().err
    assert "nosuchstudy" in err and "curves" in err and "bnh" in err
    assert list(workdir.iterdir()) == []


def test_reading_commands_do_not_create_storage(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in (["pareto", "curves"], ["status", "curves"], ["ls"]):
        assert main(command) == 2
        assert "no storage at" in capsys.readouterr().err
    assert list(workdir.iterdir()) == []


def test_bad_flag_type_is_a_usage_error(run_hpo) -> None:  # type: ignore[no-untyped-def]
    result = run_hpo("study", "bnh", "--trials", "many")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hpo: error: argument --trials: invalid int value: 'many'"
    ]
