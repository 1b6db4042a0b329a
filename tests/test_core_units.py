"""Pure logic: constraints, trial outcomes, Pareto front, hypervolume, conditional spaces."""

from __future__ import annotations

import math
import random
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.pareto import hypervolume, nondominated, nondominated_ranks, pareto_front
from hpo.spec import Constraint, Goal, load_spec
from hpo.trials import ask, decide, tell


@pytest.mark.parametrize(
    ("text", "metric", "op", "bound"),
    [("exact >= 50.5", "exact", ">=", 50.5), ("latency_ms<=20", "latency_ms", "<=", 20.0),
     ("HasAns_exact >= 5", "HasAns_exact", ">=", 5.0), ("loss <= -1e-3", "loss", "<=", -1e-3)],
)
def test_constraint_grammar(text: str, metric: str, op: str, bound: float) -> None:
    constraint = Constraint.parse(text)
    assert (constraint.metric, constraint.op, constraint.bound) == (metric, op, bound)


@pytest.mark.parametrize(("text", "written"), [
    ("num_params <= 20000001", "num_params <= 20000001"),  # was 2e+07: another constraint
    ("num_params <= 1.2e8", "num_params <= 120000000"), ("exact >= 50.5", "exact >= 50.5"),
    ("loss <= -1e-3", "loss <= -0.001"), ("f <= 0.30000000000000004", "f <= 0.30000000000000004"),
])
def test_a_constraint_is_written_exactly(text: str, written: str) -> None:
    """Studies record their constraints as written and compare them on resume."""
    assert str(Constraint.parse(text)) == written
    assert Constraint.parse(written) == Constraint.parse(text)


@pytest.mark.parametrize("text", ["exact > 50", "exact >= ", "__import__('os') >= 1",
                                  "exact >= 1 or 1", "exact == 3", "exact >= nan", 5])
def test_constraint_grammar_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Constraint.parse(text)  # type: ignore[arg-type]


def test_constraint_violation_sign() -> None:
    assert Constraint.parse("exact >= 50.5").violation({"exact": 52.0}) == -1.5
    assert Constraint.parse("exact >= 50.5").violation({"exact": 50.07}) == pytest.approx(0.43)
    assert Constraint.parse("latency_ms <= 20").violation({"latency_ms": 25}) == 5


@pytest.fixture
def bnh_spec():  # type: ignore[no-untyped-def]
    return load_spec("bnh")


def test_decide_states(bnh_spec) -> None:  # type: ignore[no-untyped-def]
    good = {"f1": 10.0, "f2": 20.0, "c1": 3.0, "c2": 50.0, "hpo_final": True}
    outcome = decide(bnh_spec, 0, {}, good)
    assert outcome.state == TrialState.COMPLETE and outcome.values == [10.0, 20.0]
    assert outcome.constraints == [3.0 - 25, 7.7 - 50.0] and outcome.feasible
    infeasible = decide(bnh_spec, 0, {}, {**good, "c1": 30.0})
    assert infeasible.state == TrialState.COMPLETE and not infeasible.feasible
    nan = decide(bnh_spec, 0, {}, {**good, "f2": math.nan})
    assert nan.state == TrialState.FAIL and nan.reason == "metric 'f2' is nan"
    missing = decide(bnh_spec, 0, {}, {"f1": 1.0, "hpo_final": True})
    assert missing.state == TrialState.FAIL and "'f2' was not returned" in str(missing.reason)
    error = decide(bnh_spec, 0, {}, {"hpo_error": "ValueError: boom", "hpo_final": True})
    assert error.state == TrialState.FAIL and error.reason == "ValueError: boom"
    stopped = decide(bnh_spec, 0, {}, {"f1": 1.0, "hpo_step": 3})
    assert stopped.state == TrialState.PRUNED and not stopped.feasible
    crashed = decide(bnh_spec, 0, {}, None, crashed=True)
    assert crashed.state == TrialState.FAIL and "died" in str(crashed.reason)
    interrupted = decide(bnh_spec, 0, {}, {"f1": 1.0, "hpo_step": 3}, interrupted=True)
    assert interrupted.state == TrialState.FAIL and interrupted.interrupted


def test_tell_stores_both_constraint_formats_and_requeues_interrupted(bnh_spec) -> None:  # type: ignore[no-untyped-def]
    study = optuna.create_study(directions=bnh_spec.directions)
    trial, params = ask(study, bnh_spec)
    good = {"f1": 10.0, "f2": 20.0, "c1": 30.0, "c2": 50.0, "hpo_final": True}
    tell(study, trial, decide(bnh_spec, trial.number, params, good))
    frozen = study.trials[0]
    assert frozen.constraints == {"0": 5.0, "1": 7.7 - 50.0}
    assert frozen.system_attrs["constraints"] == [5.0, 7.7 - 50.0]  # optuna-dashboard's form
    assert study.best_trials == []  # infeasible: Optuna agrees
    trial, params = ask(study, bnh_spec)
    tell(study, trial, decide(bnh_spec, trial.number, params, None))
    assert study.trials[1].user_attrs["interrupted"] is True
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    _, again = ask(study, bnh_spec)  # the interrupted configuration runs next
    assert again == params


def _trial(number: int, values: list[float], constraints: list[float] | None = None,
           state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(state=state, values=values if state == TrialState.COMPLETE
                                      else None)
    trial.number = number
    for i, value in enumerate(constraints or []):
        trial.set_constraint(str(i), value)
    return trial


def test_pareto_front_matches_optuna_and_ignores_infeasible() -> None:
    goals = [Goal("acc", "maximize", 0.0), Goal("size", "minimize", 10.0)]
    trials = [_trial(0, [0.9, 8.0], [-1]), _trial(1, [0.8, 2.0], [-1]),
              _trial(2, [0.95, 1.0], [0.5]),            # dominates all, but infeasible
              _trial(3, [0.7, 3.0], [-1]),              # dominated by 1
              _trial(4, [0.9, 8.0], [0]),               # ties trial 0: both stay
              _trial(5, [], None, TrialState.PRUNED), _trial(6, [], None, TrialState.FAIL)]
    assert [t.number for t in pareto_front(trials, goals)] == [0, 1, 4]
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trials(trials)
    assert sorted(t.values for t in study.best_trials) == sorted(
        t.values for t in pareto_front(trials, goals))
    front = pareto_front(trials, goals)
    # maximize acc from 0, minimize size up to 10: union of [0,0.9]x[8,10] and [0,0.8]x[2,10]
    assert hypervolume(front, goals) == pytest.approx(0.9 * 2 + 0.8 * 6)
    assert hypervolume(front, [Goal("acc", "maximize"), goals[1]]) is None


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def test_nondominated_sorting_follows_the_definition() -> None:
    # Ties, infinities (MO-ASHA's missing metrics and violations) and 1 to 4 objectives.
    rng = random.Random(0)
    for _ in range(500):
        m = rng.randint(1, 4)
        points = [[rng.choice([math.inf, -math.inf]) if rng.random() < 0.1 else rng.randint(0, 4)
                   for _ in range(m)] for _ in range(rng.randint(1, 25))]  # fmt: skip
        flags = nondominated(points)
        assert flags == [not any(_dominates(o, p) for o in points) for p in points], points
        ranks = nondominated_ranks(points)
        for p, rank in zip(points, ranks, strict=True):  # one rank below its best dominator
            above = [r for o, r in zip(points, ranks, strict=True) if _dominates(o, p)]
            assert rank == (max(above) + 1 if above else 0), points
    assert nondominated([]) == [] and nondominated_ranks([]) == []


def test_conditional_parameters_exist_only_when_their_condition_holds(tmp_path: Path) -> None:
    path = tmp_path / "cond.yaml"
    path.write_text("""
objective: {name: "hpo_test_objectives:Flaky"}
parameters:
  x: {type: float, low: 0, high: 1}
  mode: {type: categorical, choices: [full, lora]}
  lora_r: {type: int, low: 2, high: 64, log: true, when: {mode: lora}}
objectives: [{metric: a, direction: minimize}]
""")
    spec = load_spec(str(path))
    assert spec.has_conditions
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial, params = ask(study, spec)
        assert ("lora_r" in params) == (params["mode"] == "lora")
        seen.add(params["mode"])
        study.tell(trial, 0.0)
    assert seen == {"full", "lora"}


def test_set_outside_the_top_level_keys_means_an_objective_argument() -> None:
    spec = load_spec("curves", [("steps", 3), ("objective.args.noise", 0.0), ("run.seed", 4)])
    assert spec.objective_args == {"steps": 3, "noise": 0.0} and spec.seed == 4


def test_the_recorded_git_diff_shows_no_password(tmp_path: Path) -> None:
    import subprocess

    from hpo.provenance import git_state

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "run.sh").write_text("hpo study curves\n")
    git("add", "run.sh")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    (tmp_path / "run.sh").write_text("hpo study curves --storage postgresql://me:s3cret@db/x\n")
    state = git_state(tmp_path)
    assert state.dirty and "postgresql://me:***@db/x" in state.diff and "s3cret" not in state.diff


def test_the_recorded_cpu_tells_generations_and_vector_widths_apart() -> None:
    from hpo.provenance import describe_cpu

    def cpuinfo(family: str, model: str, flags: str) -> str:
        first = (f"processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {family}\n"
                 f"model\t\t: {model}\nflags\t\t: fpu sse2 {flags}\n")
        return first + "\nprocessor\t: 1\nmodel name\t: something else\n"

    zen5 = describe_cpu(cpuinfo("26", "2", "avx avx2 avx512f avx512bw"), 2)
    assert zen5 == "AMD EPYC (family 26, model 2; avx512; 2 logical CPUs)"
    zen3 = describe_cpu(cpuinfo("25", "1", "avx avx2"), 2)
    assert zen3 == "AMD EPYC (family 25, model 1; avx2; 2 logical CPUs)"
    assert describe_cpu(cpuinfo("26", "2", "avx avx2 avx512f avx512bw"), 4) != zen5
    assert describe_cpu("", None).endswith("(? logical CPUs)")  # no /proc/cpuinfo


NVIDIA_SMI_L = """GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5d4c7a1e-0000-1111-2222-333344445555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-b2f0e1aa-0000-1111-2222-333344445555)
  MIG 3g.20gb     Device  0: (UUID: MIG-9e8d7c6b-0000-1111-2222-333344445555)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-c3a1b2c3-0000-1111-2222-333344445555)
"""


def test_the_recorded_gpus_are_those_cuda_shows_the_trial() -> None:
    """CUDA_VISIBLE_DEVICES read as CUDA reads it (indices, UUID prefixes, up to the first
    entry that names no device); an index names a model for sure only in PCI bus order or
    on a machine of one model."""
    from hpo.provenance import describe_gpus, visible_gpus

    h100, a100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"
    either = f"{a100} or {h100}"  # CUDA's default order puts the fastest first
    assert visible_gpus(NVIDIA_SMI_L, None, False) == [h100, a100, h100]  # not set: all
    assert visible_gpus(NVIDIA_SMI_L, "1", True) == [a100]
    assert visible_gpus(NVIDIA_SMI_L, "1,0", False) == [either, either]
    assert visible_gpus(NVIDIA_SMI_L, "GPU-b2f0, GPU-5d4c", False) == [a100, h100]
    assert visible_gpus(NVIDIA_SMI_L, "MIG-9e8d", False) == [f"{a100} MIG 3g.20gb"]
    for none in ("", "-1", "7", "GPU-", "GPU-ffff", "NoDevFiles"):
        assert visible_gpus(NVIDIA_SMI_L, none, True) == [], none
    assert visible_gpus(NVIDIA_SMI_L, "2,7,0", True) == [h100]  # CUDA stops at 7
    one_model = NVIDIA_SMI_L.replace(a100, h100)
    assert visible_gpus(one_model, "1", False) == [h100]
    assert describe_gpus([h100, h100, a100]) == f"2 x {h100}, {a100}"
    assert describe_gpus([]) == "none"
