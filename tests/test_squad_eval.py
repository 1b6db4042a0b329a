"""The project's SQuAD 2.0 evaluation against hand-computed cases and the real dev sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from objectives.distill_squad.squad_eval import (
    always_no_answer_baseline,
    apply_no_ans_threshold,
    compute_exact,
    compute_f1,
    evaluate,
    find_best_thresh,
    get_tokens,
    load_squad,
    make_qid_to_has_ans,
    normalize_answer,
)

SQUAD_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad_v2"
DEV = SQUAD_DIR / "dev-v2.0.json"
DEV_SHA256 = "11d4ed8be01b0110a901d8c13456e073544ff204225c6e36d957b3659b666884"
needs_dev = pytest.mark.skipif(not DEV.is_file(), reason=f"real SQuAD 2.0 sample absent: {DEV}")


def _qa(qid: str, *answers: str) -> dict[str, Any]:
    return {
        "id": qid,
        "question": "?",
        "answers": [{"text": a, "answer_start": 0} for a in answers],
    }


# q1, q2 answerable; q3, q4 unanswerable.
DATASET: list[dict[str, Any]] = [
    {
        "title": "t",
        "paragraphs": [
            {"context": "c", "qas": [_qa("q1", "the big red dog", "red dog"), _qa("q2", "Paris")]},
            {"context": "c", "qas": [_qa("q3"), _qa("q4")]},
        ],
    },
]
# q1: exact 0, f1 max(2/3 vs "big red dog", 4/5 vs "red dog") = 0.8; q2: 1, 1; q3: 1, 1; q4: 0, 0.
PREDS = {"q1": "red dog barked", "q2": "paris.", "q3": "", "q4": "London"}
NA_PROBS = {"q1": 0.2, "q2": 0.1, "q3": 0.9, "q4": 0.7}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Cat!", "cat"),
        ("  A man, a plan; an Apple.  ", "man plan apple"),
        ("theatre and anthem", "theatre and anthem"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("the", ""),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_get_tokens() -> None:
    assert get_tokens("") == []
    assert get_tokens("The a an") == []
    assert get_tokens("The Big, red dog") == ["big", "red", "dog"]


def test_exact_and_f1_partial_overlap() -> None:
    assert compute_exact("The Cat!", "cat") == 1
    assert compute_exact("the big red dog", "red dog barked") == 0
    # gold [big, red, dog], pred [red, dog, barked]: precision = recall = 2/3
    assert compute_f1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    # gold [red, dog], pred [red, dog, barked]: p = 2/3, r = 1 -> 2 * (2/3) / (5/3) = 4/5
    assert compute_f1("red dog", "red dog barked") == pytest.approx(0.8)
    # repeated tokens count once per occurrence (Counter intersection): p = 1/3, r = 1
    assert compute_f1("dog", "dog dog dog") == pytest.approx(0.5)
    assert compute_f1("red dog", "blue cat") == 0
    assert compute_f1("", "") == 1
    assert compute_f1("", "something") == 0
    assert compute_f1("something", "") == 0


def test_max_over_gold_answers_and_unanswerable() -> None:
    preds = {qid: "" for qid in ("q1", "q2", "q3", "q4")} | {"q1": "red dog barked"}
    scores = evaluate(DATASET, preds)
    # q1 f1 is the better of its two gold answers: 0.8, not 2/3; q3 and q4 score 1 for "".
    assert scores["HasAns_f1"] == pytest.approx(100 * (0.8 + 0) / 2)
    assert scores["NoAns_exact"] == pytest.approx(100.0)
    # an unanswerable question scores 1 only for the empty prediction (or one normalizing to "")
    one_no_ans = [{"title": "t", "paragraphs": [{"context": "c", "qas": [_qa("n")]}]}]
    assert evaluate(one_no_ans, {"n": ""})["exact"] == 100.0
    assert evaluate(one_no_ans, {"n": "The."})["exact"] == 100.0
    assert evaluate(one_no_ans, {"n": "nothing"}) == {
        "exact": 0.0,
        "f1": 0.0,
        "total": 1,
        "NoAns_exact": 0.0,
        "NoAns_f1": 0.0,
        "NoAns_total": 1,
    }


def test_gold_answers_that_normalize_to_empty_are_dropped() -> None:
    data = [{"title": "t", "paragraphs": [{"context": "c", "qas": [_qa("x", "the", "Rome")]}]}]
    assert evaluate(data, {"x": "rome"})["exact"] == 100.0
    assert evaluate(data, {"x": ""})["exact"] == 0.0  # "" does not match the gold "the"


def test_small_dataset_every_metric() -> None:
    assert make_qid_to_has_ans(DATASET) == {"q1": True, "q2": True, "q3": False, "q4": False}
    scores = evaluate(DATASET, PREDS)
    assert scores == pytest.approx(
        {
            "exact": 100 * (0 + 1 + 1 + 0) / 4,  # 50
            "f1": 100 * (0.8 + 1 + 1 + 0) / 4,  # 70
            "total": 4,
            "HasAns_exact": 100 * (0 + 1) / 2,  # 50
            "HasAns_f1": 100 * (0.8 + 1) / 2,  # 90
            "HasAns_total": 2,
            "NoAns_exact": 100 * (1 + 0) / 2,  # 50
            "NoAns_f1": 100 * (1 + 0) / 2,  # 50
            "NoAns_total": 2,
        }
    )


def test_na_prob_threshold_flips_to_no_answer() -> None:
    # threshold 0.5: q3 (0.9) and q4 (0.7) count as no-answer -> q4 becomes correct
    scores = evaluate(DATASET, PREDS, NA_PROBS, na_prob_thresh=0.5)
    assert scores["exact"] == pytest.approx(75.0)
    assert scores["f1"] == pytest.approx(100 * (0.8 + 1 + 1 + 1) / 4)  # 95
    assert scores["NoAns_exact"] == scores["NoAns_f1"] == 100.0
    assert scores["HasAns_f1"] == pytest.approx(90.0)
    # threshold 0.15: q1 (0.2) is flipped too, an answerable question answered "no answer" -> 0
    low = evaluate(DATASET, PREDS, NA_PROBS, na_prob_thresh=0.15)
    assert low["HasAns_f1"] == pytest.approx(50.0)
    # strict ">": na_prob equal to the threshold keeps the answer
    assert evaluate(DATASET, PREDS, NA_PROBS, na_prob_thresh=0.7)["NoAns_exact"] == 50.0
    raw = {"a": 0.5, "b": 0.0}
    has_ans = {"a": True, "b": False}
    assert apply_no_ans_threshold(raw, {"a": 0.9, "b": 0.9}, has_ans, 0.5) == {"a": 0.0, "b": 1.0}


def test_find_best_thresh_hand_derived() -> None:
    exact_raw = {"q1": 0, "q2": 1, "q3": 1, "q4": 0}
    f1_raw = {"q1": 0.8, "q2": 1, "q3": 1, "q4": 0}
    has_ans = make_qid_to_has_ans(DATASET)
    # start: all no-answer = 2 correct (q3, q4). By na_prob: q2 (0.1) +1 -> 3 (best, 0.1);
    # q1 (0.2) +0 exact / +0.8 f1; q4 (0.7) "London" -> -1; q3 (0.9) "" -> 0.
    assert find_best_thresh(PREDS, exact_raw, NA_PROBS, has_ans) == (75.0, 0.1)
    best_f1, f1_thresh = find_best_thresh(PREDS, f1_raw, NA_PROBS, has_ans)
    assert best_f1 == pytest.approx(100 * 3.8 / 4)
    assert f1_thresh == 0.2
    scores = evaluate(DATASET, PREDS, NA_PROBS)
    assert scores["best_exact"] == 75.0
    assert scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(95.0)
    assert scores["best_f1_thresh"] == 0.2
    # the best threshold reproduces the best score through the ordinary threshold path
    assert evaluate(DATASET, PREDS, NA_PROBS, 0.2)["f1"] == pytest.approx(scores["best_f1"])
    assert "best_f1" not in evaluate(DATASET, PREDS)


def test_find_best_thresh_official_quirk_raw_prediction_string() -> None:
    # The official sweep charges -1 for any non-empty raw prediction on an unanswerable
    # question, even "the" (which normalizes to "" and scores 1 in exact/f1).
    data = [{"title": "t", "paragraphs": [{"context": "c", "qas": [_qa("n"), _qa("h", "x")]}]}]
    preds = {"n": "the", "h": "x"}
    scores = evaluate(data, preds, {"n": 0.1, "h": 0.2})
    assert scores["exact"] == 100.0
    # start 1 (n); n: -1 -> 0; h: +1 -> 1, not > 1 -> best stays 1 of 2 at threshold 0.0
    assert scores["best_exact"] == 50.0
    assert scores["best_exact_thresh"] == 0.0


def test_missing_predictions_raise() -> None:
    with pytest.raises(ValueError, match=r"2 of 4 questions have no prediction: q2, q4"):
        evaluate(DATASET, {"q1": "", "q3": ""})
    with pytest.raises(ValueError, match=r"1 of 4 questions have no na_prob: q4"):
        evaluate(DATASET, PREDS, {"q1": 0.0, "q2": 0.0, "q3": 0.0})
    with pytest.raises(ValueError, match="no questions"):
        evaluate([], {})


def test_load_squad_checks_format(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": "v2.0", "data": DATASET}))
    data, sha = load_squad(good)
    assert data == DATASET
    assert len(sha) == 64
    wrong = tmp_path / "v1.json"
    wrong.write_text(json.dumps({"version": "1.1", "data": DATASET}))
    with pytest.raises(ValueError, match=r"v1\.json.*'version'"):
        load_squad(wrong)
    no_data = tmp_path / "nodata.json"
    no_data.write_text(json.dumps({"version": "v2.0", "data": {}}))
    with pytest.raises(ValueError, match=r"nodata\.json.*'data'"):
        load_squad(no_data)


@needs_dev
def test_real_dev_sha256_and_counts() -> None:
    data, sha = load_squad(DEV)
    assert sha == DEV_SHA256
    has_ans = make_qid_to_has_ans(data)
    assert len(has_ans) == 741
    assert sum(not v for v in has_ans.values()) == 355


@needs_dev
def test_real_dev_always_no_answer_baseline() -> None:
    data, _ = load_squad(DEV)
    scores = always_no_answer_baseline(data)
    assert scores["exact"] == pytest.approx(100 * 355 / 741)  # README: 47.9
    assert scores["exact"] == pytest.approx(47.9, abs=0.05)
    assert scores["f1"] == pytest.approx(100 * 355 / 741)
    assert scores["total"] == 741
    assert scores["HasAns_exact"] == 0.0
    assert scores["HasAns_total"] == 386
    assert scores["NoAns_exact"] == 100.0
    assert scores["NoAns_total"] == 355


@needs_dev
def test_real_dev_gold_predictions_score_100() -> None:
    data, _ = load_squad(DEV)
    preds = {
        qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "")
        for article in data
        for p in article["paragraphs"]
        for qa in p["qas"]
    }
    scores = evaluate(data, preds)
    assert scores["exact"] == 100.0
    assert scores["f1"] == 100.0
    assert scores["HasAns_exact"] == scores["NoAns_exact"] == 100.0
