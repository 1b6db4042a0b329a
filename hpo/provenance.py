"""Where a study's numbers come from: code (git commit and diff), environment, inputs.

Recorded once per study session (``run_study``): in the Optuna study user attribute
:data:`PROVENANCE_ATTR` and on the MLflow parent run. Each trial's full resolved
configuration (:func:`trial_config`) is written next to its outputs. Nothing here imports
torch: package versions come from ``importlib.metadata``. A missing git, a directory
that is not a repository or a missing ``nvidia-smi`` is recorded as unknown, never an error.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hpo.settings import redact
from hpo.spec import StudySpec

PROVENANCE_ATTR = "provenance"
UNKNOWN = "unknown"
PACKAGES = ("hpo", "torch", "transformers", "peft", "optuna", "ray", "mlflow", "numpy")
"""Versions recorded when installed."""
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class GitState:
    commit: str = UNKNOWN
    dirty: bool = False
    diff: str = ""
    repo: str = UNKNOWN


def _command(args: list[str], cwd: Path | None = None, timeout: float = 20) -> str | None:
    """Output of a command, or None when it is missing or fails."""
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(directory: Path) -> GitState:
    """Commit (``git rev-parse HEAD``) and uncommitted diff (``git diff HEAD``) of the
    repository containing ``directory``; :data:`UNKNOWN` outside a repository."""
    if not directory.is_dir():
        return GitState()
    root = _command(["git", "rev-parse", "--show-toplevel"], directory)
    commit = _command(["git", "rev-parse", "HEAD"], directory)
    if root is None or commit is None:
        return GitState()
    diff = redact(_command(["git", "diff", "HEAD"], directory) or "")  # URLs' passwords
    return GitState(commit.strip(), bool(diff), diff, root.strip())


def code_dir(spec: StudySpec) -> Path:
    """The code under study: the repository of the study file, else the current directory."""
    source = Path(spec.source)
    if source.is_file():
        folder = source.resolve().parent
        if _command(["git", "rev-parse", "HEAD"], folder) is not None:
            return folder
    return Path.cwd()


def current_commit(spec: StudySpec) -> str:
    return git_state(code_dir(spec)).commit


CPUINFO = Path("/proc/cpuinfo")


def describe_cpu(cpuinfo: str, logical: int | None) -> str:
    """The CPU in one line from Linux's ``/proc/cpuinfo`` text (its first processor; empty
    elsewhere): model name, family and model numbers (a VM may name only "AMD EPYC" for
    several generations), the widest vector instructions torch can dispatch to, and the
    logical CPUs. Two machines that differ here can give different floating-point results
    for the same trial."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']}, model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    if flags:
        widest = (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"))
        details.append(next((width for flag, width in widest if flag in flags), "no avx"))
    details.append(f"{logical or '?'} logical CPUs")
    name = fields.get("model name") or platform.processor() or platform.machine() or UNKNOWN
    return f"{name} ({'; '.join(details)})"


@functools.cache
def cpu() -> str:
    """This machine's CPU (:func:`describe_cpu`; read once per process: trial workers
    send it with every trial)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        text = ""
    return describe_cpu(text, os.cpu_count())


_GPU_LINE = re.compile(r"GPU (\d+): (.+) \(UUID: (GPU-[^)]+)\)")
_MIG_LINE = re.compile(r"MIG (\S+)\s+Device\s+\d+: \(UUID: (MIG-[^)]+)\)")


def visible_gpus(listing: str, visible: str | None, pci_order: bool) -> list[str]:
    """The model of each device CUDA shows a process, from ``nvidia-smi -L``'s ``listing``
    and the process's ``CUDA_VISIBLE_DEVICES`` (``visible``; None: every GPU), read as
    CUDA reads it: indices or UUID prefixes, up to the first entry that names no device.
    A MIG device is its GPU's model and profile. An index counts in nvidia-smi's (PCI bus)
    order only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (``pci_order``); in CUDA's default
    order, fastest first, an index on a machine of mixed models is "A or B"."""
    gpus: dict[int, str] = {}  # nvidia-smi's index -> model
    devices: list[tuple[str, str]] = []  # (model, UUID) of the GPUs and MIG devices
    model = ""  # of the GPU listed last: a MIG device is listed under its GPU
    for line in listing.splitlines():
        if gpu := _GPU_LINE.fullmatch(line.strip()):
            model = gpus[int(gpu[1])] = gpu[2]
            devices.append((model, gpu[3]))
        elif (mig := _MIG_LINE.fullmatch(line.strip())) and model:
            devices.append((f"{model} MIG {mig[1]}", mig[2]))
    if visible is None:
        return list(gpus.values())
    models = sorted(set(gpus.values()))
    shown = []
    for entry in (part.strip() for part in visible.split(",")):
        if entry.isdigit() and int(entry) in gpus:
            shown.append(gpus[int(entry)] if pci_order or len(models) == 1
                         else " or ".join(models))  # fmt: skip
            continue
        named = [name for name, uuid in devices if entry[:4] in ("GPU-", "MIG-")
                 and uuid.startswith(entry)]  # fmt: skip
        if len(named) != 1:
            break
        shown.append(named[0])
    return shown


@functools.cache
def _gpu_listing() -> str:
    return _command(["nvidia-smi", "-L"]) or ""


def trial_gpus(given: float) -> list[str]:
    """The models of the GPUs a trial given ``given`` GPUs (its resources) can use: none
    when it was given none (objectives then run on the CPU, as distill-squad's do, whatever
    the machine has), else those CUDA shows its process (:func:`visible_gpus`: Ray's share
    of the machine; none without ``nvidia-smi``). Trial workers send them with every
    trial."""
    if given <= 0 or not (listing := _gpu_listing()):
        return []
    order = os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
    return visible_gpus(listing, os.environ.get("CUDA_VISIBLE_DEVICES"), order)


def describe_gpus(models: Sequence[str]) -> str:
    """GPU models in one line: "none", "NVIDIA H100 80GB HBM3", "2 x NVIDIA A100, ..."."""
    counts = Counter(models)
    return ", ".join(f"{n} x {model}" if n > 1 else model for model, n in counts.items()) or "none"


def environment() -> dict[str, Any]:
    """Host, CPU, Python, installed package versions, CUDA and GPU names when present."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu": cpu(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": packages,
    }
    gpus = _command(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if gpus:
        env["gpus"] = [line.strip() for line in gpus.splitlines() if line.strip()]
        header = _command(["nvidia-smi"]) or ""
        for part in header.split("|"):
            if "CUDA Version:" in part:
                env["cuda"] = part.split("CUDA Version:", 1)[1].strip()
    return env


def study_provenance(
    spec: StudySpec, inputs: Mapping[str, str], previous: Mapping[str, Any] | None
) -> tuple[dict[str, Any], GitState]:
    """The study's provenance for this session; a resume keeps every earlier commit in
    ``commits`` (and its sessions in ``sessions``) instead of overwriting them."""
    git = git_state(code_dir(spec))
    env = environment()
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": env["host"],
               "cpu": env["cpu"], "git_commit": git.commit, "git_dirty": git.dirty}
    earlier = dict(previous or {})
    commits = list(earlier.get("commits", []))
    if git.commit not in commits:
        commits.append(git.commit)
    record = {
        "environment": env,
        "git_commit": git.commit,
        "git_dirty": git.dirty,
        "git_repo": git.repo,
        "commits": commits,
        "sessions": [*earlier.get("sessions", []), session],
        "inputs": dict(inputs) or dict(earlier.get("inputs", {})),
    }
    return record, git


def trial_config(
    spec: StudySpec, number: int, params: Mapping[str, Any], seed: int, git_commit: str
) -> dict[str, Any]:
    """Everything that defines one trial: what ``hpo reproduce`` needs to run it again."""
    return {
        "study": spec.name,
        "trial": number,
        "seed": seed,
        "objective": {"name": spec.objective, "args": dict(spec.objective_args)},
        "params": dict(params),
        "resources": {"cpus": spec.resources.cpus, "gpus": spec.resources.gpus},
        "git_commit": git_commit,
        "spec": dict(spec.raw),
    }


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    return path
