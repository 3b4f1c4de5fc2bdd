"""The benchmarks' metrics, implemented to give the official numbers. A leaf of the data
flow: it reads predictions and references only (the VQA answer normalisation it shares
with data preparation lives in vladapter.data.answers).

- VQA score: the official VQA evaluation's accuracy: for each of the 10 human answers,
  min(1, #matches among the other 9 / 3), averaged over the 10; answers normalised
  (punctuation, number words -> digits, articles, contractions) only when the humans
  disagree, as the official evaluation does. VL-T5's evaluator as an option (vl-t5).
- GQA: exact-match accuracy.
- NLVR2: accuracy and consistency (share of sentences whose every pair is right).
- CIDEr(-D): pycocoevalcap's scorer on PTB-tokenised text (Stanford tokenizer, Java).
- Multiple-choice accuracy (TVQA, How2QA).

All scores are percentages (0-100), as the paper reports them (CIDEr x 100).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

from vladapter.data.answers import clean, normalize_answer, strip_punctuation

# How a prediction is matched against the human answers:
#   official  the official evaluation (GT-Vision-Lab/VQA vqaEval.py): answers and prediction
#             are normalised only when the human answers differ; when all agree the
#             prediction must equal their (stripped) text: "Yes" against ten "yes" scores 0
#   vl-t5     VL-T5's evaluator (VQAEvaluator.evaluate_raw): the prediction is always
#             normalised; the human answers, when they differ, lose only their punctuation
VQA_EVALUATORS = ("official", "vl-t5")


def vqa_accuracy(prediction: str, human_answers: Sequence[str], evaluator: str = "official") -> float:
    """One question's VQA accuracy in [0, 1]: the average over the humans of
    min(1, #other humans who gave the predicted answer / 3), with the prediction matched
    as ``evaluator`` (VQA_EVALUATORS) does."""
    if not human_answers:
        raise ValueError("vqa_accuracy needs the human answers")
    if evaluator == "official":
        pred, answers = clean(prediction), [clean(a) for a in human_answers]
        if len(set(answers)) > 1:
            pred, answers = normalize_answer(pred), [normalize_answer(a) for a in answers]
    elif evaluator == "vl-t5":
        pred, answers = normalize_answer(prediction), list(human_answers)
        if len(set(answers)) > 1:
            answers = [strip_punctuation(a) for a in answers]
    else:
        raise ValueError(f"unknown VQA evaluator {evaluator!r} (known: {', '.join(VQA_EVALUATORS)})")
    total = 0.0
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == pred)
        total += min(1.0, matches / 3.0)
    return total / len(answers)


def vqa_score(predictions: Sequence[str], human_answers: Sequence[Sequence[str]], evaluator: str = "official") -> float:
    """Mean VQA accuracy over questions, in percent."""
    _same_length(predictions, human_answers)
    return 100.0 * _mean(vqa_accuracy(p, h, evaluator) for p, h in zip(predictions, human_answers))


# --- accuracies -------------------------------------------------------------------------

def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Percent of predictions equal to the answer (surrounding space and case ignored)."""
    _same_length(predictions, answers)
    return 100.0 * _mean(p.strip().lower() == a.strip().lower() for p, a in zip(predictions, answers))


def nlvr_scores(correct: Sequence[bool], groups: Sequence[str]) -> dict[str, float]:
    """NLVR2 accuracy and consistency (percent).

    Consistency: the share of groups (statements shared by several image pairs) in
    which every example is right.
    """
    _same_length(correct, groups)
    by_group: dict[str, bool] = defaultdict(lambda: True)
    for ok, group in zip(correct, groups):
        by_group[group] = by_group[group] and bool(ok)
    return {"accuracy": 100.0 * _mean(map(bool, correct)),
            "consistency": 100.0 * _mean(by_group.values())}


# --- CIDEr ------------------------------------------------------------------------------

def ptb_tokenize(texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """PTB-tokenise (lower case, punctuation removed) with pycocoevalcap's Stanford tokenizer."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The tokenizer reads one sentence per line; an empty or blank sentence would shift
    # the lines, so it is tokenised as a lone "." (removed again as punctuation).
    data = {k: [{"caption": t if t.strip() else "."} for t in v] for k, v in texts.items()}
    out = PTBTokenizer().tokenize(data)
    return {k: out.get(k, []) for k in texts}


def cider(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> float:
    """Corpus CIDEr-D x 100 of one caption per id against its references (pycocoevalcap)."""
    from pycocoevalcap.cider.cider import Cider

    if set(predictions) != set(references):
        raise ValueError("cider: predictions and references must have the same ids")
    if not predictions:
        raise ValueError("cider: nothing to score")
    keys = [str(k) for k in predictions]
    gts = ptb_tokenize({str(k): list(v) for k, v in references.items()})
    res = ptb_tokenize({str(k): [v] for k, v in predictions.items()})
    score, _ = Cider().compute_score({k: gts[k] for k in keys}, {k: res[k] for k in keys})
    return 100.0 * float(score)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    if not values:
        raise ValueError("no examples to score")
    return sum(values) / len(values)


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions for {len(b)} examples")
