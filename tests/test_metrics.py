"""Metrics against hand-computed expectations and against pycocoevalcap itself."""

from __future__ import annotations

import json

import pytest

from vladapter.data.answers import CONTRACTIONS, normalize_answer
from vladapter.metrics import cider, exact_match, nlvr_scores, vqa_accuracy, vqa_score


@pytest.mark.parametrize("raw, expected", [
    ("Two", "2"),                       # number words -> digits
    ("none", "0"),
    ("The red ball.", "red ball"),      # articles and the final period go
    ("a dog", "dog"),
    ("dont", "don't"),                  # contractions get their apostrophes
    ("couldnt've", "couldn't've"),
    ("couldntve", "couldntve"),         # not in the official table: left as it is
    ("somebody'd", "somebodyd"),        # the official table's quirk, kept
    ("its", "its"),                     # a real word, left alone (as the official table)
    ("t-shirt", "t shirt"),             # a mark inside a word becomes a space
    ("yes !", "yes"),                   # a mark next to a space is deleted
    ("10,000", "10000"),                # digit,digit: the number keeps together
    ("1.5", "1.5"),                     # a decimal point stays
    ("  Yes\n", "yes"),
    ("left/right", "left right"),
])
def test_vqa_answer_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize("n_agree, expected", [
    (0, 0.0),
    (1, 0.3),    # 1 human: the other 9 each see 1 match -> 1/3; that one sees 0:  9/3/10
    (2, 0.6),    # (2 x 1/3 + 8 x 2/3) / 10
    (3, 0.9),    # (3 x 2/3 + 7 x 1) / 10
    (4, 1.0),
    (10, 1.0),
])
def test_vqa_accuracy_averages_min1_over_the_10_humans(n_agree, expected):
    humans = ["2"] * n_agree + ["3"] * (10 - n_agree)
    assert vqa_accuracy("2", humans) == pytest.approx(expected)


def test_vqa_score_is_a_percentage_mean():
    humans = [["yes"] * 10, ["red"] * 2 + ["blue"] * 8]
    assert vqa_score(["yes", "red"], humans) == pytest.approx(100 * (1.0 + 0.6) / 2)
    with pytest.raises(ValueError):
        vqa_score(["yes"], humans)


def test_exact_match():
    assert exact_match(["Red", "blue ", "x"], ["red", "blue", "y"]) == pytest.approx(200 / 3)


def test_nlvr_accuracy_and_consistency():
    # statement A: 3 pairs all right; B: 2 pairs, one wrong; C: 1 pair wrong
    correct = [True, True, True, True, False, False]
    groups = ["A", "A", "A", "B", "B", "C"]
    scores = nlvr_scores(correct, groups)
    assert scores["accuracy"] == pytest.approx(400 / 6)
    assert scores["consistency"] == pytest.approx(100 / 3)


def test_cider_equals_pycocoevalcap_on_real_coco_results(real_fixtures):
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    coco = json.loads((real_fixtures / "coco_captions" / "captions_val2014.json").read_text())
    results = json.loads((real_fixtures / "coco_captions" / "captions_val2014_fakecap_results.json").read_text())
    refs: dict[str, list[str]] = {}
    for ann in coco["annotations"]:
        refs.setdefault(str(ann["image_id"]), []).append(ann["caption"])
    preds = {str(r["image_id"]): r["caption"] for r in results if str(r["image_id"]) in refs}
    refs = {k: refs[k] for k in preds}
    assert len(preds) == 134

    # the reference computation, exactly as the COCO caption evaluation does it
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": preds[k]}] for k in preds})
    expected, _ = Cider().compute_score(gts, res)

    assert cider(preds, refs) == pytest.approx(100 * expected, rel=1e-9)
    assert 10 < cider(preds, refs) < 200  # a sane corpus CIDEr for real captions


def test_cider_survives_empty_predictions():
    refs = {"1": ["a red circle on the left"], "2": ["two blue squares"], "3": ["a green triangle"]}
    preds = {"1": "a red circle on the left", "2": "", "3": "a green triangle"}
    # an empty caption scores 0 and does not shift the other captions' tokens
    with_empty = cider(preds, refs)
    assert with_empty == pytest.approx(cider({**preds, "2": "zzz"}, refs))
    assert with_empty > 0


def test_the_contraction_table_is_the_official_one():
    assert len(CONTRACTIONS) == 120  # the official table's entries, no more
    assert CONTRACTIONS["somebody'd"] == "somebodyd" and CONTRACTIONS["y'alld've"] == "y'all'd've"
    assert "its" not in CONTRACTIONS and "couldntve" not in CONTRACTIONS and "im" not in CONTRACTIONS


# prediction, the 10 human answers, official score, VL-T5's evaluator's score
@pytest.mark.parametrize("prediction, humans, official, vl_t5", [
    ("two", ["2"] * 10, 0.0, 1.0),                     # all agree: no normalisation officially
    ("Yes", ["yes"] * 10, 0.0, 1.0),
    ("an apple", ["apple"] * 10, 0.0, 1.0),
    (" yes\n", ["yes"] * 10, 1.0, 1.0),                # surrounding space goes in both
    ("two", ["2"] * 9 + ["two"], 1.0, 1.0),            # humans differ: both sides normalised
    ("2 dogs", ["two dogs"] * 5 + ["2 dogs"] * 5, 1.0, 1.0),
    ("2", ["two"] * 5 + ["three"] * 5, 1.0, 0.0),      # VL-T5 leaves the humans' words as they are
    ("yes", ["Yes"] * 5 + ["no"] * 5, 1.0, 0.0),       # ... and their case
])
def test_official_and_vl_t5_evaluators_differ_where_they_should(prediction, humans, official, vl_t5):
    assert vqa_accuracy(prediction, humans) == pytest.approx(official)
    assert vqa_accuracy(prediction, humans, "official") == pytest.approx(official)
    assert vqa_accuracy(prediction, humans, "vl-t5") == pytest.approx(vl_t5)
    with pytest.raises(ValueError, match="unknown VQA evaluator"):
        vqa_accuracy(prediction, humans, "vl_t5")


def test_the_vqa_task_scores_with_the_evaluator_the_evaluate_section_names():
    from vladapter.data.records import Record
    from vladapter.tasks import get_task
    from vladapter.core.config import EvaluateConfig

    record = Record(uid="1", task="vqa", split="test", source="coco", images=["img"], text="Is it red?",
                    targets={"yes": 1.0}, references=["yes"] * 10)
    assert EvaluateConfig().vqa_evaluator == "official"
    assert get_task("vqa").score(["Yes"], [record])["vqa_score"] == 0.0
    assert get_task("vqa", vqa_evaluator="official").score(["Yes"], [record])["vqa_score"] == 0.0
    assert get_task("vqa", vqa_evaluator="vl-t5").score(["Yes"], [record])["vqa_score"] == 100.0
