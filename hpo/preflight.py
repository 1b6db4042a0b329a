"""Preflight: what must hold before a study starts, checked without writing anything.

Each check is a small function returning an :class:`Outcome`; :func:`run_preflight` runs
them all so every problem is reported at once. The fast version (``full=False``) runs at
every study start; ``hpo preflight`` runs the full one (real imports, data parsed).
Objective-specific checks live in the objective (:meth:`hpo.Objective.preflight`).
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hpo.errors import ConfigError
from hpo.objectives import Objective, resolve_objective
from hpo.samplers import SAMPLER_MODULES
from hpo.settings import Settings, redact
from hpo.spec import StudySpec

DISK_WARN_BYTES = 1024**3
"""Below this much free space under HPO_HOME or the storage: a warning."""
DISK_FAIL_BYTES = 100 * 1024**2
"""Below this much: a problem (the study does not start)."""
NETWORK_TIMEOUT_S = 3.0
"""Connecting to a database, an MLflow server or a hub."""
SUBPROCESS_TIMEOUT_S = 300.0
"""Importing the objective's modules, or running a tensor on the GPU, in a subprocess."""

_IMPORT_SCRIPT = """\
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        print(f"{name}: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
"""
_GPU_SCRIPT = """\
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"no GPU visible to torch {torch.__version__} (CUDA {torch.version.cuda})")
x = torch.arange(1024.0, device="cuda")
assert float((x * 2).sum()) == 1047552.0, "wrong result of a tensor operation on the GPU"
print(torch.cuda.device_count(), torch.cuda.get_device_name(0))
"""


@dataclass(frozen=True)
class Outcome:
    """One check: what passed (``detail``), or its problems; warnings do not stop a study."""

    check: str
    detail: str = ""
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    outcomes: tuple[Outcome, ...]

    @property
    def problems(self) -> list[str]:
        return [f"{o.check}: {redact(p)}" for o in self.outcomes for p in o.problems]

    @property
    def warnings(self) -> list[str]:
        return [f"{o.check}: {redact(w)}" for o in self.outcomes for w in o.warnings]

    def lines(self) -> list[str]:
        """``ok`` and ``warn`` lines of the checks that passed (problems: see ``raise_``)."""
        passed = [f"ok    {o.check}: {redact(o.detail)}" for o in self.outcomes if not o.problems]
        return passed + [f"warn  {w}" for w in self.warnings]

    def raise_for_problems(self) -> None:
        """``ConfigError`` listing every problem, one per line (exit 2: nothing started)."""
        if self.problems:
            count = len(self.problems)
            raise ConfigError(
                f"preflight found {count} problem{'s' * (count > 1)}, the study does not "
                "start:\n  " + "\n  ".join(self.problems)
            )


@dataclass(frozen=True)
class _Context:
    spec: StudySpec
    settings: Settings
    objective: Objective
    full: bool
    address: str | None


def run_preflight(
    spec: StudySpec, settings: Settings, *, full: bool, address: str | None = None
) -> Report:
    """Run every check; ``address`` (a Ray cluster) means trials, and GPUs, are elsewhere."""
    objective = resolve_objective(spec.objective)(**spec.objective_args)
    context = _Context(spec, settings, objective, full, address)
    checks: tuple[Callable[[_Context], Outcome], ...] = (
        check_imports, check_data, check_storage, check_tracking, check_output, check_disk,
        check_gpu,
    )  # fmt: skip
    return Report(tuple(check(context) for check in checks))


def check_imports(ctx: _Context) -> Outcome:
    choices = {
        p.name: tuple(getattr(p.distribution, "choices", ())) for p in ctx.spec.parameters
    }
    needed_by = dict.fromkeys(ctx.objective.required_modules(choices),
                              f"objective {ctx.spec.objective!r}")
    for name in SAMPLER_MODULES.get(ctx.spec.sampler, ()):
        needed_by.setdefault(name, f"sampler {ctx.spec.sampler!r}")
    modules = list(needed_by)
    problems = [
        f"module {name!r} is not installed ({who} needs it)"
        for name, who in needed_by.items()
        if not _findable(name)
    ]
    if ctx.full and not problems and modules:
        done = _python(_IMPORT_SCRIPT, *modules)
        problems = [f"cannot import {line}" for line in done.stdout.splitlines() if line]
        if done.returncode and not problems:
            problems = [f"importing {', '.join(modules)} failed: {_last_line(done.stderr)}"]
    how = "imported" if ctx.full else "installed"
    return Outcome("imports", f"{', '.join(modules)} {how}" if modules else "none needed",
                   tuple(problems))


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_data(ctx: _Context) -> Outcome:
    try:
        problems = list(ctx.objective.preflight(ctx.settings.cache_dir, full=ctx.full))
    except Exception as exc:  # a plug-in's bug must not hide the other checks
        problems = [f"objective {ctx.spec.objective!r} preflight failed: "
                    f"{type(exc).__name__}: {exc}"]
    if type(ctx.objective).preflight is Objective.preflight:
        detail = f"objective {ctx.spec.objective!r} declares no inputs to check"
    else:
        detail = f"inputs of objective {ctx.spec.objective!r} " + (
            "present and readable" if ctx.full else "present")
    return Outcome("data", detail, tuple(problems))


def check_storage(ctx: _Context) -> Outcome:
    url, path = ctx.settings.storage_url, ctx.settings.sqlite_path
    problems = _sqlite_problems(path) if path is not None else _database_problems(url)
    return Outcome("storage", f"{url} writable" if path else f"{url} reachable", tuple(problems))


def check_tracking(ctx: _Context) -> Outcome:
    uri = ctx.settings.tracking_uri
    scheme = urlsplit(uri).scheme
    if uri.startswith("sqlite:///"):
        problems, detail = _sqlite_problems(Path(uri.removeprefix("sqlite:///"))), "writable"
    elif scheme in ("http", "https"):
        problem = http_problem(uri.rstrip("/") + "/health")
        problems, detail = [problem] if problem else [], "MLflow server answers"
    elif scheme in ("", "file"):
        directory = Path(urlsplit(uri).path if scheme else uri)
        problems, detail = _writable_problems(directory), "writable"
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        problems, detail = _database_problems(uri), "reachable"
    else:
        problems, detail = [], "not checked (unknown kind of tracking URI)"
    return Outcome("tracking", f"{uri} {detail}", tuple(problems))


def check_output(ctx: _Context) -> Outcome:
    settings = ctx.settings
    places = (settings.home, settings.study_dir(ctx.spec.name), settings.cache_dir)
    problems = [p for place in places for p in _writable_problems(place)]
    return Outcome("output", f"{settings.home} writable", tuple(dict.fromkeys(problems)))


def check_disk(ctx: _Context) -> Outcome:
    places = [ctx.settings.home]
    if ctx.settings.sqlite_path is not None:
        places.append(ctx.settings.sqlite_path.parent)
    problems, warnings, details = [], [], []
    for where in dict.fromkeys(_existing(place) for place in places):
        if not where.is_dir():
            continue  # check_output / check_storage report it
        free = shutil.disk_usage(where).free
        text = f"{free / 1024**3:.1f} GB free at {where}"
        details.append(text)
        if free < DISK_FAIL_BYTES:
            problems.append(f"{text}; at least {DISK_FAIL_BYTES // 1024**2} MB are needed")
        elif free < DISK_WARN_BYTES:
            warnings.append(f"only {text}")
    return Outcome("disk", ", ".join(details), tuple(problems), tuple(warnings))


def check_gpu(ctx: _Context) -> Outcome:
    need = ctx.spec.resources.gpus
    if need <= 0:
        return Outcome("gpu", "none requested (run.resources.gpus = 0)")
    if ctx.address:
        return Outcome("gpu", f"not checked here: trials run on the Ray cluster {ctx.address}")
    done = _python(_GPU_SCRIPT)
    if done.returncode:
        problem = (f"run.resources.gpus = {need:g} but no GPU can run a tensor operation "
                   f"here: {_last_line(done.stderr)}")
        return Outcome("gpu", problems=(problem,))
    count, _, name = done.stdout.strip().partition(" ")
    if int(count) < math.ceil(need):
        problem = f"run.resources.gpus = {need:g} per trial but {count} GPU(s) are visible"
        return Outcome("gpu", problems=(problem,))
    return Outcome("gpu", f"{count} visible ({name}); a tensor operation ran on it")


def _python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter (so hpo itself never imports torch)."""
    try:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 1, "", f"timed out after {SUBPROCESS_TIMEOUT_S}s")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what gets created there, later)."""
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _writable_problems(directory: Path) -> list[str]:
    """Whether ``directory`` exists, or could be created, and files can be written in it."""
    base = _existing(directory)
    if not base.is_dir():
        return [f"{base} is not a directory, so {directory} cannot be created"]
    try:
        with tempfile.TemporaryFile(dir=base):  # unnamed on Linux: nothing left behind
            pass
    except OSError as exc:
        return [f"cannot write in {base} ({exc.strerror or exc})"]
    return []


def _sqlite_problems(path: Path) -> list[str]:
    problems = _writable_problems(path.parent)
    if problems or not path.exists():
        return problems
    if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
        return [f"{path} is not a readable and writable file"]
    try:
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as db:
            db.execute("PRAGMA schema_version")
    except sqlite3.Error as exc:
        # A writer killed mid-transaction leaves a hot journal that only a read-write
        # connection may roll back (SQLITE_READONLY_ROLLBACK): the study's own does.
        if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_READONLY"):
            return [f"{path} is not a usable SQLite database ({exc})"]
    return []


def _database_problems(url: str) -> list[str]:
    """Connect with a short timeout and run ``SELECT 1``."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    timeout = {"connect_timeout": math.ceil(NETWORK_TIMEOUT_S)}
    kwargs = timeout if url.startswith(("postgresql", "mysql")) else {}
    try:
        engine = create_engine(url, connect_args=kwargs, poolclass=NullPool)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return [f"cannot connect to {redact(url)}: {redact(_last_line(str(exc)))}"]
    return []


def http_problem(url: str) -> str | None:
    """``None`` when a GET of ``url`` answers 200 within the timeout, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=NETWORK_TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{redact(url)} is not reachable ({reason})"
    return None if status == 200 else f"{redact(url)} answered HTTP {status}"
