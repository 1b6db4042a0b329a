"""The official SQuAD 2.0 evaluation (``evaluate-v2.0.py``, Rajpurkar, Jia and Liang, 2018).

A typed, stdlib-only port whose definitions match the official script line for line:
answer normalization, exact match, token F1, the no-answer probability threshold, the
overall / ``HasAns_`` / ``NoAns_`` splits and the best-threshold sweep (``best_*`` keys).

One deliberate difference: the official script skips a question that has no prediction
(printing "Missing prediction for ..."); :func:`evaluate` raises :class:`ValueError`
instead, so a trial can never silently score a subset of the questions.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SQUAD_VERSION = "v2.0"
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)
_SHOWN_MISSING = 5


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (official order)."""

    def remove_articles(text: str) -> str:
        return _ARTICLES.sub(" ", text)

    def white_space_fix(text: str) -> str:
        return " ".join(text.split())

    def remove_punc(text: str) -> str:
        return "".join(ch for ch in text if ch not in _PUNCTUATION)

    def lower(text: str) -> str:
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s: str) -> list[str]:
    """The normalized answer's whitespace tokens; ``[]`` for an empty string."""
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold: str, a_pred: str) -> int:
    """1 if gold and prediction are equal after normalization, else 0."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """Token-level F1 between a gold answer and a prediction."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise.
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def _questions(dataset: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for article in dataset:
        for paragraph in article["paragraphs"]:
            yield from paragraph["qas"]


def make_qid_to_has_ans(dataset: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """Question id -> whether the question has at least one gold answer."""
    return {qa["id"]: bool(qa["answers"]) for qa in _questions(dataset)}


def _check_covered(what: str, qids: Sequence[str], given: Mapping[str, Any]) -> None:
    missing = [qid for qid in qids if qid not in given]
    if missing:
        shown = ", ".join(missing[:_SHOWN_MISSING])
        more = ", ..." if len(missing) > _SHOWN_MISSING else ""
        raise ValueError(f"{len(missing)} of {len(qids)} questions have no {what}: {shown}{more}")


def get_raw_scores(
    dataset: Sequence[Mapping[str, Any]], preds: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-question exact and F1 scores (max over the gold answers), before thresholding.

    Raises ValueError if any question of ``dataset`` has no prediction.
    """
    _check_covered("prediction", list(make_qid_to_has_ans(dataset)), preds)
    exact_scores: dict[str, float] = {}
    f1_scores: dict[str, float] = {}
    for qa in _questions(dataset):
        qid = qa["id"]
        gold_answers = [a["text"] for a in qa["answers"] if normalize_answer(a["text"])]
        if not gold_answers:
            # For unanswerable questions, the only correct answer is the empty string.
            gold_answers = [""]
        a_pred = preds[qid]
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
    return exact_scores, f1_scores


def apply_no_ans_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Scores with every prediction whose na_prob exceeds the threshold read as no-answer."""
    new_scores: dict[str, float] = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
    return new_scores


def make_eval_dict(
    exact_scores: Mapping[str, float],
    f1_scores: Mapping[str, float],
    qid_list: Sequence[str] | None = None,
) -> dict[str, float]:
    """``exact``, ``f1`` (percent) and ``total`` over ``qid_list`` (all scored ids if empty)."""
    if not qid_list:
        total = len(exact_scores)
        return {
            "exact": 100.0 * sum(exact_scores.values()) / total,
            "f1": 100.0 * sum(f1_scores.values()) / total,
            "total": total,
        }
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
        "total": total,
    }


def _merge_eval(main_eval: dict[str, float], new_eval: Mapping[str, float], prefix: str) -> None:
    for k, v in new_eval.items():
        main_eval[f"{prefix}_{k}"] = v


def find_best_thresh(
    preds: Mapping[str, str],
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> tuple[float, float]:
    """The official sweep: (best score in percent, the na_prob threshold that reaches it).

    Starts from "every question answered no-answer" (``num_no_ans`` correct), then walks the
    questions by increasing na_prob, answering one more each step: an answerable question
    adds its raw score, an unanswerable one loses 1 if its raw prediction string is
    non-empty (even one that normalizes to "", e.g. "the") and 0 otherwise.
    """
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score: float = num_no_ans
    best_score: float = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        # answerable: its raw score; unanswerable: -1 for any non-empty raw prediction string
        diff = scores[qid] if qid_to_has_ans[qid] else (-1 if preds[qid] else 0)
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def find_all_best_thresh(
    main_eval: dict[str, float],
    preds: Mapping[str, str],
    exact_raw: Mapping[str, float],
    f1_raw: Mapping[str, float],
    na_probs: Mapping[str, float],
    qid_to_has_ans: Mapping[str, bool],
) -> None:
    """Add ``best_exact``, ``best_exact_thresh``, ``best_f1`` and ``best_f1_thresh``."""
    best_exact, exact_thresh = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    best_f1, f1_thresh = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    main_eval["best_exact"] = best_exact
    main_eval["best_exact_thresh"] = exact_thresh
    main_eval["best_f1"] = best_f1
    main_eval["best_f1_thresh"] = f1_thresh


def evaluate(
    dataset: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """The official SQuAD 2.0 metrics of ``predictions`` on ``dataset`` (the JSON's "data").

    Returns ``exact``, ``f1``, ``total`` and their ``HasAns_`` / ``NoAns_`` splits (a split
    with no questions is omitted); with ``na_probs`` also the ``best_*`` keys. Predictions
    for ids outside ``dataset`` are ignored, as in the official script. Raises ValueError if
    the dataset has no questions or a question has no prediction (or no na_prob).
    """
    qid_to_has_ans = make_qid_to_has_ans(dataset)
    if not qid_to_has_ans:
        raise ValueError("the dataset has no questions")
    if na_probs is not None:
        _check_covered("na_prob", list(qid_to_has_ans), na_probs)
    probs: Mapping[str, float] = (
        na_probs if na_probs is not None else {k: 0.0 for k in predictions}
    )
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    exact_raw, f1_raw = get_raw_scores(dataset, predictions)
    exact_thresh = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out_eval = make_eval_dict(exact_thresh, f1_thresh)
    if has_ans_qids:
        _merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, has_ans_qids), "HasAns")
    if no_ans_qids:
        _merge_eval(out_eval, make_eval_dict(exact_thresh, f1_thresh, no_ans_qids), "NoAns")
    if na_probs is not None:
        find_all_best_thresh(out_eval, predictions, exact_raw, f1_raw, na_probs, qid_to_has_ans)
    return out_eval


def always_no_answer_baseline(dataset: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The metrics of predicting "" (no answer) for every question."""
    return evaluate(dataset, {qid: "" for qid in make_qid_to_has_ans(dataset)})


def load_squad(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], str]:
    """Read an official-format SQuAD 2.0 JSON file: its ``data`` list and the file's sha256."""
    raw = Path(path).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: top level is {type(doc).__name__}, expected an object")
    version = doc.get("version")
    if version != SQUAD_VERSION:
        raise ValueError(f"{path}: field 'version' is {version!r}, expected {SQUAD_VERSION!r}")
    data = doc.get("data")
    if not isinstance(data, list):
        raise ValueError(f"{path}: field 'data' is {type(data).__name__}, expected a list")
    return data, digest
