"""distill-squad's preflight checks: data files, hub sources and model paths.

Cheap, and without torch: the study has not started when these run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo.preflight import http_problem
from objectives.distill_squad.squad_eval import load_squad

BUILT_IN_BACKBONES = ("tiny", "minilm")
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def problems(args: Mapping[str, Any], *, full: bool) -> list[str]:
    """Every problem with the inputs named by the objective's arguments."""
    found: list[str] = []
    data = args["data"]
    for split in ("train", "eval"):
        if data.get(split):
            found += _file_problems(f"data.{split}", Path(data[split]), full=full)
    if data.get("hub"):
        found += _hub_problems("data.hub", "datasets", str(data["hub"]),
                               "set data.train and data.eval to official SQuAD 2.0 JSON files")
    if args.get("backbone") not in BUILT_IN_BACKBONES:
        found += _model_problems("backbone", str(args["backbone"]))
    if args.get("teacher"):
        found += _model_problems("teacher", str(args["teacher"]))
    return found


def _file_problems(field: str, path: Path, *, full: bool) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return [f"{field}: cannot read {path} ({exc.strerror or exc})"]
    if not full:
        return []
    try:
        data, _ = load_squad(path)
    except ValueError as exc:
        return [f"{field}: {exc}"]
    shape = squad_shape_problem(data)
    return [f"{field}: {path}: {shape} (not the official SQuAD 2.0 format)"] if shape else []


def squad_shape_problem(data: list[Any]) -> str | None:
    """Where the official ``data`` list of a SQuAD 2.0 file has the wrong shape, if anywhere."""
    questions = 0
    for i, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            return f"data[{i}] has no 'paragraphs' list"
        for j, paragraph in enumerate(paragraphs):
            where = f"data[{i}].paragraphs[{j}]"
            if not (isinstance(paragraph, dict) and isinstance(paragraph.get("context"), str)
                    and isinstance(paragraph.get("qas"), list)):
                return f"{where} needs a 'context' string and a 'qas' list"
            for k, qa in enumerate(paragraph["qas"]):
                if not (isinstance(qa, dict) and isinstance(qa.get("id"), str)
                        and isinstance(qa.get("question"), str)
                        and isinstance(qa.get("answers"), list)):
                    return f"{where}.qas[{k}] needs 'id', 'question' and an 'answers' list"
                questions += 1
    return None if questions else "it holds no questions"


def _model_problems(field: str, value: str) -> list[str]:
    """A local model directory must hold a config.json; anything else is a hub id."""
    path = Path(value).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() or not os.access(path / "config.json", os.R_OK):
            return [f"{field}: {path} is not a model directory (no readable config.json)"]
        return []
    if value.startswith(("/", ".", "~")) or value.count("/") > 1:
        return [f"{field}: {value!r}: no directory {path.absolute()}"]
    return _hub_problems(field, "models", value, "give a local model directory")


def _hub_problems(field: str, kind: str, name: str, instead: str) -> list[str]:
    offline = [v for v in _OFFLINE_VARIABLES if os.environ.get(v, "").lower() in ("1", "true")]
    if offline:
        return [f"{field}: {name!r} is on the hub but {offline[0]} is set; {instead}"]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    problem = http_problem(f"{endpoint}/api/{kind}/{name}")
    return [f"{field}: {name!r} needs the hub: {problem}; {instead}"] if problem else []
