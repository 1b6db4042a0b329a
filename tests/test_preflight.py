"""Preflight: every problem listed at once, exit 2, nothing written, the study not started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpo import preflight as preflight_module
from hpo.api import preflight
from tests.conftest import RunHpo, hpo_env


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _contents(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def _gpu_visible() -> bool:
    script = "import torch; print(torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    return done.stdout.strip() == "True"


def _problems(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines()[1:] if line.startswith("  ")]


def test_preflight_of_curves_passes_and_lists_each_check(run_hpo: RunHpo, workdir: Path) -> None:
    done = run_hpo("preflight", "curves")
    assert done.returncode == 0, done.stderr
    checks = [line.split()[1].rstrip(":") for line in done.stdout.splitlines()
              if line.startswith("ok ")]
    assert checks == ["imports", "data", "storage", "tracking", "output", "disk", "gpu"]
    assert "all 7 checks passed" in done.stdout
    assert _contents(workdir) == set()  # nothing written, not even storage/


def test_study_refuses_to_start_and_lists_every_problem(run_hpo: RunHpo, workdir: Path) -> None:
    """As root nothing is read-only, but nothing can create a directory under a file."""
    (workdir / "afile").write_text("not a directory\n")
    port = _closed_port()
    done = run_hpo("study", "curves", "--trials", "2", "--backend", "local",
                   "--storage", f"sqlite:///{workdir}/afile/sub/optuna.db",
                   "--tracking-uri", f"http://127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    assert "preflight found 2 problems, the study does not start" in done.stderr
    storage, tracking = _problems(done.stderr)
    assert storage.startswith("storage: ") and f"{workdir}/afile is not a directory" in storage
    assert tracking.startswith("tracking: ") and f"127.0.0.1:{port}/health" in tracking
    assert _contents(workdir) == {"afile"}


def test_study_asking_for_a_gpu_fails_preflight_without_one(
    run_hpo: RunHpo, workdir: Path
) -> None:
    if _gpu_visible():
        pytest.skip("a GPU is visible here: the GPU check passes")
    done = run_hpo("study", "curves", "--gpus", "1", "--backend", "local", "--trials", "2")
    assert done.returncode == 2, done.stderr
    [problem] = _problems(done.stderr)
    assert problem.startswith("gpu: run.resources.gpus = 1 but no GPU can run a tensor")
    assert _contents(workdir) == set()


def test_full_preflight_of_distill_squad_reads_the_data(run_hpo: RunHpo, workdir: Path) -> None:
    """Files that exist (so the study file validates) but are not SQuAD 2.0, an unknown
    teacher directory and an unreachable MLflow server: one run reports all four."""
    (workdir / "train.json").write_text("{not json")
    (workdir / "dev.json").write_text(json.dumps({"version": "v2.0", "data": [{"title": "x"}]}))
    port = _closed_port()
    done = run_hpo("preflight", "distill-squad", "--set", f"data.train={workdir}/train.json",
                   "--set", f"data.eval={workdir}/dev.json", "--set", "teacher=./no-teacher",
                   "--tracking-uri", f"http://127.0.0.1:{port}/")
    assert done.returncode == 2, done.stderr
    problems = _problems(done.stderr)
    assert len(problems) == 4, done.stderr
    assert problems[0].startswith(f"data: data.train: {workdir}/train.json: not valid JSON")
    assert problems[1] == (f"data: data.eval: {workdir}/dev.json: data[0] has no 'paragraphs'"
                           " list (not the official SQuAD 2.0 format)")
    assert problems[2] == f"data: teacher: './no-teacher': no directory {workdir}/no-teacher"
    assert problems[3].startswith("tracking: ")
    assert "ok    imports: torch, transformers, tokenizers, numpy, tqdm, peft imported" in (
        done.stdout)
    assert _contents(workdir) == {"train.json", "dev.json"}


def test_storage_problems_name_the_database_and_hide_its_password(workdir: Path) -> None:
    (workdir / "text.db").write_text("this is not SQLite\n" * 100)
    report = preflight("curves", storage=f"sqlite:///{workdir}/text.db", full=False)
    [problem] = report.problems
    assert problem.startswith(f"storage: {workdir}/text.db is not a usable SQLite database")
    url = f"postgresql://hpo:s3cret@127.0.0.1:{_closed_port()}/hpo"
    report = preflight("curves", storage=url, tracking_uri=url, full=False)
    assert [p.split(":")[0] for p in report.problems] == ["storage", "tracking"]
    assert "hpo:***@127.0.0.1" in report.problems[0]
    assert "s3cret" not in "\n".join(report.problems + report.lines())
    assert _contents(workdir) == {"text.db"}


_KILLED_MID_WRITE = """
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA cache_size = 1")  # changed pages spill into the file mid-transaction
db.execute("CREATE TABLE t (x TEXT)")
db.execute("BEGIN")
db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 2000)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_hot_journal_left_by_a_killed_driver_is_not_a_storage_problem(workdir: Path) -> None:
    """The study's read-write connection rolls the journal back; the read-only check cannot."""
    path = workdir / "optuna.db"
    subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(path)], check=False)
    assert (workdir / "optuna.db-journal").stat().st_size > 0
    assert preflight("curves", storage=f"sqlite:///{path}", full=False).problems == []


def test_disk_space_thresholds(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real free space, thresholds moved above it (a full disk cannot be made here)."""
    monkeypatch.setattr(preflight_module, "DISK_WARN_BYTES", 2**62)
    report = preflight("curves", full=False)
    assert not report.problems
    assert report.warnings[0].startswith("disk: only ") and "GB free at" in report.warnings[0]
    monkeypatch.setattr(preflight_module, "DISK_FAIL_BYTES", 2**61)
    [problem] = preflight("curves", full=False).problems
    assert problem.startswith("disk: ") and "at least" in problem


_WITHOUT_TORCH = """
import sys

class NoTorch:  # as if torch were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTorch())
from hpo.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sampler", ["gp", "gp-tpe"])
def test_a_gp_sampler_without_torch_fails_preflight(sampler: str, workdir: Path) -> None:
    """Refused at the start, not at the first GP suggestion after the start-up trials."""
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, "study", "bnh", "--backend", "local",
         "--trials", "12", "--set", f"run.sampler={sampler}"],
        cwd=workdir, env=hpo_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    [problem] = _problems(done.stderr)
    assert problem == f"imports: module 'torch' is not installed (sampler {sampler!r} needs it)"
    assert _contents(workdir) == set()
