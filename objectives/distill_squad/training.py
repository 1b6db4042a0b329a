"""Distillation training, evaluation every 1/k of training, and answer extraction."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpo.objectives import Reporter
from objectives.distill_squad.squad_eval import evaluate

Features = Mapping[str, torch.Tensor]
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float
    epochs: float
    batch_size: int
    evaluations: int
    """Evaluate (and report) this many times, evenly spaced over training."""
    alpha_squad: float = 1.0
    alpha_ce: float = 0.0
    temperature: float = 1.0
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_answer_length: int = 30


def distillation_loss(start: torch.Tensor, end: torch.Tensor, batch: Features,
                      teacher: tuple[torch.Tensor, torch.Tensor] | None,
                      settings: TrainSettings) -> dict[str, torch.Tensor]:
    """``alpha_squad`` * CE(gold) + ``alpha_ce`` * T² * KL(teacher_T || student_T)."""
    ce = (F.cross_entropy(start, batch["start_positions"])
          + F.cross_entropy(end, batch["end_positions"])) / 2
    parts = {"loss_squad": ce}
    loss = settings.alpha_squad * ce
    if teacher is not None and settings.alpha_ce > 0:
        t = settings.temperature
        kl = torch.stack([
            F.kl_div(F.log_softmax(s / t, dim=-1), F.softmax(tl.float() / t, dim=-1),
                     reduction="batchmean")
            for s, tl in ((start, teacher[0]), (end, teacher[1]))
        ]).mean() * t**2
        parts["loss_ce"] = kl
        loss = loss + settings.alpha_ce * kl
    parts["loss"] = loss
    return parts


def train(model: nn.Module, features: Features, settings: TrainSettings, device: torch.device,
          evaluate_fn: Callable[[int], Mapping[str, float]],
          report: Reporter,
          teacher_logits: torch.Tensor | None = None,
          generator: torch.Generator | None = None,
          on_step: Callable[[], None] | None = None) -> dict[str, float]:
    """Train with AdamW and linear warm-up/decay; every 1/k of the steps, evaluate and
    report the evaluation metrics with the mean loss components since the last report
    (the one at the end of training with ``last=True``). Returns the last report."""
    n = len(features["input_ids"])
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = max(1, round(settings.epochs * steps_per_epoch))
    marks = {max(1, round(total * (i + 1) / settings.evaluations))
             for i in range(settings.evaluations)}
    decay = [p for name, p in model.named_parameters()
             if p.requires_grad and not (name.endswith("bias") or "LayerNorm" in name)]
    no_decay = [p for name, p in model.named_parameters()
                if p.requires_grad and (name.endswith("bias") or "LayerNorm" in name)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=settings.learning_rate)
    warmup = max(1, int(settings.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    sums: dict[str, float] = {}
    count = 0
    latest: dict[str, float] = {}
    order = torch.empty(0, dtype=torch.long)
    model.train()
    for step in range(1, total + 1):
        position = (step - 1) % steps_per_epoch
        if position == 0:
            order = torch.randperm(n, generator=generator)
        index = order[position * settings.batch_size:(position + 1) * settings.batch_size]
        batch = {k: v[index].to(device) for k, v in features.items()
                 if k in (*_INPUTS, "start_positions", "end_positions")}
        start, end = model(*(batch[k] for k in _INPUTS))
        teacher = None
        if teacher_logits is not None:
            logits = teacher_logits[index].to(device)
            teacher = (logits[..., 0], logits[..., 1])
        parts = distillation_loss(start, end, batch, teacher, settings)
        if not torch.isfinite(parts["loss"]):
            raise FloatingPointError(f"loss is {parts['loss'].item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
        count += 1
        if on_step is not None:
            on_step()
        if step in marks:
            latest = {**evaluate_fn(step), **{k: v / count for k, v in sums.items()},
                    "epoch": step / steps_per_epoch}
            report(step, latest, last=step == total)
            sums, count = {}, 0
            model.train()
    return latest


@torch.inference_mode()
def predict_logits(model: nn.Module, features: Features, device: torch.device,
                   batch_size: int = 128) -> torch.Tensor:
    """Start/end logits of every feature, shape (features, sequence, 2), on the CPU."""
    model.eval()
    out = []
    for i in range(0, len(features["input_ids"]), batch_size):
        start, end = model(*(features[k][i:i + batch_size].to(device) for k in _INPUTS))
        out.append(torch.stack((start, end), dim=-1).float().cpu())
    return torch.cat(out)


def answers(logits: torch.Tensor, features: Features, rows: list[dict[str, Any]],
            max_answer_length: int = 30, n_best: int = 20
            ) -> tuple[dict[str, str], dict[str, float]]:
    """Best span of each question over its windows, and its no-answer score: the
    [CLS] score minus the best span score (> 0 means "no answer" at threshold 0)."""
    best: dict[int, tuple[float, str]] = {}
    null: dict[int, float] = {}
    offsets = features["offsets"]
    for f in range(len(logits)):
        example = int(features["example_index"][f])
        start, end = logits[f, :, 0], logits[f, :, 1]
        null[example] = min(null.get(example, math.inf), float(start[0] + end[0]))
        valid = offsets[f, :, 0] >= 0
        start_masked = start.masked_fill(~valid, -math.inf)
        end_masked = end.masked_fill(~valid, -math.inf)
        k = min(n_best, int(valid.sum()))
        if k == 0:
            continue
        starts = torch.topk(start_masked, k).indices.tolist()
        ends = torch.topk(end_masked, k).indices.tolist()
        context = rows[example]["context"]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start[s] + end[e])
                if score > best.get(example, (-math.inf, ""))[0]:
                    best[example] = (score, context[int(offsets[f, s, 0]):int(offsets[f, e, 1])])
    predictions, na_scores = {}, {}
    for example, row in enumerate(rows):
        score, text = best.get(example, (-math.inf, ""))
        predictions[row["id"]] = text
        na_scores[row["id"]] = null.get(example, 0.0) - score if math.isfinite(score) else 1e9
    return predictions, na_scores


def evaluation_metrics(model: nn.Module, features: Features, rows: list[dict[str, Any]],
                       data: list[dict[str, Any]], no_answer_exact: float, device: torch.device,
                       max_answer_length: int = 30) -> dict[str, float]:
    """The model's :func:`squad_metrics` on these questions, and ``exact_over_no_answer``:
    its exact minus that of always predicting "no answer" (``no_answer_exact``)."""
    metrics = squad_metrics(predict_logits(model, features, device), features, rows, data,
                            max_answer_length)
    return {**metrics, "exact_over_no_answer": metrics["exact"] - no_answer_exact}


def squad_metrics(logits: torch.Tensor, features: Features, rows: list[dict[str, Any]],
                  data: list[dict[str, Any]], max_answer_length: int = 30) -> dict[str, float]:
    """Official SQuAD 2.0 metrics at no-answer threshold 0, plus the best thresholds."""
    predictions, na_scores = answers(logits, features, rows, max_answer_length)
    metrics = evaluate(data, predictions, na_scores, na_prob_thresh=0.0)
    return {k: float(v) for k, v in metrics.items() if not k.endswith("total")}
