"""What every trial of a distill-squad study shares, built once and cached on disk:
datasets, tokenizer, features, the teacher and its logits on the training features."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from objectives.distill_squad import data as squad_data
from objectives.distill_squad.modeling import (
    MINILM_ALIAS,
    QAModel,
    minilm_path,
    pretrained_encoder,
    tiny_config,
)
from objectives.distill_squad.squad_eval import always_no_answer_baseline
from objectives.distill_squad.tokenizer import build_tokenizer
from objectives.distill_squad.training import TrainSettings, predict_logits, squad_metrics, train

TINY = "tiny"


@dataclass(frozen=True)
class Assets:
    train: squad_data.Dataset
    eval: squad_data.Dataset
    eval_rows: list[dict[str, Any]]
    train_features: dict[str, torch.Tensor]
    eval_features: dict[str, torch.Tensor]
    teacher: QAModel
    teacher_logits: torch.Tensor
    teacher_metrics: dict[str, float]
    baseline: dict[str, float]
    """Metrics of the always-no-answer prediction on the evaluation set."""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process builds a cached thing; the others wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def load_datasets(config: Mapping[str, Any]) -> tuple[squad_data.Dataset, squad_data.Dataset]:
    if config.get("hub"):
        return (squad_data.from_hub(config["hub"], "train"),
                squad_data.from_hub(config["hub"], "validation"))
    if config.get("train"):
        return squad_data.from_file(config["train"]), squad_data.from_file(config["eval"])
    seed = int(config.get("seed", 0))
    return (squad_data.from_synthetic(int(config.get("synthetic_train", 8000)), seed, "train"),
            squad_data.from_synthetic(int(config.get("synthetic_eval", 400)), seed, "eval"))


def limit_questions(dataset: squad_data.Dataset, limit: int | None) -> squad_data.Dataset:
    """The first ``limit`` questions (whole paragraphs kept in order)."""
    if limit is None:
        return dataset
    kept: list[dict[str, Any]] = []
    left = limit
    for article in dataset.data:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if left <= 0:
                break
            qas = paragraph["qas"][:left]
            left -= len(qas)
            paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
    return squad_data.Dataset(kept, f"{dataset.identity} (first {limit} questions)",
                              _key(dataset.sha256, limit))


def load_tokenizer(backbone: str, datasets: list[squad_data.Dataset], cache_dir: Path) -> Any:
    if backbone == TINY:
        directory = cache_dir / "tokenizers" / _key([d.sha256 for d in datasets])
        with _locked(directory.with_suffix(".lock")):
            return build_tokenizer([d.data for d in datasets], directory)
    from transformers import AutoTokenizer

    source = str(minilm_path()) if backbone == MINILM_ALIAS else backbone
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise RuntimeError(f"cannot load the tokenizer of {backbone!r}: not a local model "
                           "directory and no hub is reachable") from exc


def _teacher(args: Mapping[str, Any], tokenizer: Any, train_features: dict[str, torch.Tensor],
             train_identity: str, features: squad_data.FeatureSettings,
             cache_dir: Path) -> QAModel:
    given = args.get("teacher")
    if given:
        path = Path(given)
        if (path / "weights.pt").exists():
            return QAModel.load(path)
        return _from_hf_checkpoint(given)
    directory = cache_dir / "teachers" / teacher_key(args, train_identity, len(tokenizer),
                                                     features)
    with _locked(directory.with_suffix(".lock")):
        if (directory / "weights.pt").exists():
            return QAModel.load(directory)
        device = compute_device()
        print(f"distill-squad: fine-tuning the teacher ({args['backbone']}) once on "
              f"{device}; cached in {directory}", file=sys.stderr, flush=True)
        model = fine_tune_teacher(args, len(tokenizer), train_features, device)
        model.save(directory)
        return model


def compute_device() -> torch.device:
    """Where the shared assets (teacher fine-tuning, its logits) are computed: the first
    GPU when the process sees one (trials pick theirs from their resources)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fine_tune_teacher(args: Mapping[str, Any], vocab_size: int,
                      train_features: dict[str, torch.Tensor],
                      device: torch.device) -> QAModel:
    """The teacher's recipe (``teacher_*`` args) applied to its backbone, on ``device``;
    the model comes back on the CPU."""
    torch.manual_seed(0)
    if args["backbone"] == TINY:
        model = QAModel(tiny_config(vocab_size, args["max_seq_length"]))
    else:
        model = pretrained_encoder(args["backbone"], args["max_seq_length"])
    keep = args["teacher_no_answer_keep"]
    if keep < 1:
        train_features = squad_data.fewer_no_answer_windows(train_features, keep, seed=0)
    settings = teacher_settings(args)
    from tqdm import tqdm

    total = round(settings.epochs * math.ceil(len(train_features["input_ids"])
                                              / settings.batch_size))
    steps = tqdm(desc="teacher", total=total, unit="step", file=sys.stderr, mininterval=5.0)
    model.to(device)
    train(model, train_features, settings, device, evaluate_fn=lambda step: {},
          report=lambda step, metrics, last=False: None, on_step=lambda: steps.update(1))
    steps.close()
    return model.cpu()


def teacher_settings(args: Mapping[str, Any]) -> TrainSettings:
    return TrainSettings(learning_rate=args["teacher_learning_rate"],
                         epochs=args["teacher_epochs"], batch_size=args["teacher_batch_size"],
                         evaluations=1)


def teacher_key(args: Mapping[str, Any], train_identity: str, vocab_size: int,
                features: squad_data.FeatureSettings) -> str:
    """The cache key of a fine-tuned teacher: everything its training depends on (data,
    backbone, vocabulary, windows, stride, query length, recipe). The down-sampling of
    no-answer windows joins the key only when used, so keys made before it existed (the
    offline default's tiny teacher) still hold."""
    keep = args["teacher_no_answer_keep"]
    extra = [{"no_answer_keep": keep}] if keep < 1 else []
    return _key(train_identity, args["backbone"], vocab_size, features, teacher_settings(args),
                *extra)


def _from_hf_checkpoint(name: str) -> QAModel:
    from transformers import AutoModelForQuestionAnswering

    try:
        hf = AutoModelForQuestionAnswering.from_pretrained(name)
    except OSError as exc:
        raise RuntimeError(f"cannot load teacher {name!r}: not a local checkpoint and no hub "
                           "is reachable") from exc
    if not hasattr(hf, "bert"):
        raise ValueError(f"teacher {name!r} is a {type(hf).__name__}; a BERT-family QA "
                         "checkpoint is needed to initialise students from its layers")
    model = QAModel(hf.config)
    model.encoder.load_state_dict(hf.bert.state_dict(), strict=False)
    model.qa_outputs.load_state_dict(hf.qa_outputs.state_dict())
    return model


@dataclass(frozen=True)
class HeldOut:
    """Questions no trial trained or was selected on (``data.test``, or synthetic ones)."""

    dataset: squad_data.Dataset
    rows: list[dict[str, Any]]
    features: dict[str, torch.Tensor]
    baseline: dict[str, float]


def _inputs(args: Mapping[str, Any], cache_dir: Path
            ) -> tuple[squad_data.Dataset, squad_data.Dataset, Any, squad_data.FeatureSettings]:
    """The train and eval sets as trials see them, their tokenizer and feature settings."""
    train_set, eval_set = load_datasets(args["data"])
    train_set = limit_questions(train_set, args["data"].get("limit_train"))
    eval_set = limit_questions(eval_set, args["data"].get("limit_eval"))
    tokenizer = load_tokenizer(args["backbone"], [train_set, eval_set], cache_dir)
    settings = squad_data.FeatureSettings(args["max_seq_length"], args["doc_stride"],
                                          args["max_query_length"])
    return train_set, eval_set, tokenizer, settings


def load_held_out(args: Mapping[str, Any], cache_dir: Path) -> HeldOut:
    """The held-out questions and their features (cached), tokenized as the trials' were."""
    config = args["data"]
    if not config.get("test") and (config.get("train") or config.get("hub")):
        raise ValueError("no held-out data: set data.test to a SQuAD 2.0 JSON file the study "
                         "neither trains nor evaluates on (hpo pareto NAME --held-out --set "
                         "data.test=PATH)")
    train_set, eval_set, tokenizer, settings = _inputs(args, cache_dir)
    if config.get("test"):
        test_set = squad_data.from_file(config["test"])
    else:
        test_set = squad_data.synthetic_test(int(config.get("synthetic_test", 4000)),
                                             int(config.get("seed", 0)), [train_set, eval_set])
    with _locked(cache_dir / "features.lock"):
        features = squad_data.featurize(test_set, tokenizer, settings, cache_dir)
    return HeldOut(test_set, squad_data.examples(test_set), features,
                   always_no_answer_baseline(test_set.data))


def load_assets(args: Mapping[str, Any], cache_dir: Path) -> Assets:
    """Everything trials share, from the cache (built on first use)."""
    train_set, eval_set, tokenizer, settings = _inputs(args, cache_dir)
    with _locked(cache_dir / "features.lock"):
        train_features = squad_data.featurize(train_set, tokenizer, settings, cache_dir)
        eval_features = squad_data.featurize(eval_set, tokenizer, settings, cache_dir)
    teacher = _teacher(args, tokenizer, train_features, train_set.identity, settings, cache_dir)
    eval_rows = squad_data.examples(eval_set)
    key = _key(teacher_fingerprint(teacher), train_set.sha256, eval_set.sha256, settings)
    logits_path = cache_dir / "teacher_logits" / f"{key}.pt"
    with _locked(logits_path.with_suffix(".lock")):
        if logits_path.exists():
            cached = torch.load(logits_path)
        else:
            device = compute_device()
            teacher.to(device)
            cached = {
                "train": predict_logits(teacher, train_features, device).half(),
                "metrics": squad_metrics(predict_logits(teacher, eval_features, device),
                                         eval_features, eval_rows, eval_set.data),
            }
            teacher.cpu()
            torch.save(cached, logits_path)
    return Assets(train_set, eval_set, eval_rows, train_features, eval_features, teacher,
                  cached["train"], cached["metrics"], always_no_answer_baseline(eval_set.data))


def teacher_fingerprint(model: QAModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes()[:4096])
    return digest.hexdigest()[:20]
