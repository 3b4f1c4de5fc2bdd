"""The benchmarks' metrics, implemented to give the official numbers.

- VQA score: the official VQA evaluation's answer normalisation (punctuation, number
  words -> digits, articles, contractions) and its accuracy: for each of the 10 human
  answers, min(1, #matches among the other 9 / 3), averaged over the 10.
- GQA: exact-match accuracy.
- NLVR2: accuracy and consistency (share of sentences whose every pair is right).
- CIDEr(-D): pycocoevalcap's scorer on PTB-tokenised text (Stanford tokenizer, Java).
- Multiple-choice accuracy (TVQA, How2QA).

All scores are percentages (0-100), as the paper reports them (CIDEr x 100).
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

# --- VQA answer normalisation (the rules of the official VQA evaluation) -------------

# Contractions in their written form; every spelling with some apostrophes dropped
# ("dont", "couldnt've", "couldntve") is mapped to it, as the official table does.
# Like the official table, none whose short spelling is a word ("its", "well", "were",
# "hell", "ill"), and no "I" forms (its keys are capitalised, so never match lower case).
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've
hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd
it'd've it'll ma'am mightn't mightn't've might've mustn't must've needn't
not've o'clock oughtn't 'ow's'at shan't she'd've she's should've shouldn't
shouldn't've somebody'd somebody'd've somebody'll somebody's someone'd someone'd've
someone'll someone's something'd something'd've something'll that's there'd there'd've
there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've
weren't what'll what're what's what've when's where'd where's where've who'd who'd've
who'll who's who've why'll why're why's won't would've wouldn't wouldn't've y'all
y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _spellings_without_apostrophes(word: str) -> Iterable[str]:
    """Every spelling of ``word`` with a non-empty subset of its apostrophes removed."""
    parts = word.split("'")
    for keep in itertools.product((True, False), repeat=len(parts) - 1):
        if all(keep):
            continue
        out = parts[0]
        for kept, part in zip(keep, parts[1:]):
            out += ("'" if kept else "") + part
        yield out


CONTRACTIONS: dict[str, str] = {
    spelling: word for word in _CONTRACTIONS for spelling in _spellings_without_apostrophes(word)
}

NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
NUMBER_WORDS["none"] = "0"
ARTICLES = {"a", "an", "the"}
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">",
               "<", "@", "`", ",", "?", "!"]
_PERIOD = re.compile(r"\.(?!\d)")            # a period not starting a decimal part
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")    # "10,000": the text is a number, drop punctuation


def _strip_punctuation(text: str) -> str:
    # The official rule: a mark next to a space (or any text with a digit-comma-digit) is
    # deleted; a mark inside a word becomes a space ("t-shirt" -> "t shirt").
    out = text
    number_like = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or number_like:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def _digits_articles_contractions(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official VQA normalisation of an answer string.

    >>> normalize_answer("Two dogs.")
    '2 dogs'
    """
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return _digits_articles_contractions(_strip_punctuation(answer))


def vqa_accuracy(prediction: str, human_answers: Sequence[str]) -> float:
    """One question's VQA accuracy in [0, 1].

    Average over the humans of min(1, #other humans who gave the predicted answer / 3),
    with the prediction and every human answer normalised by `normalize_answer`
    (the official evaluation relies on annotations already normalised this way).
    """
    if not human_answers:
        raise ValueError("vqa_accuracy needs the human answers")
    pred = normalize_answer(prediction)
    answers = [normalize_answer(a) for a in human_answers]
    total = 0.0
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == pred)
        total += min(1.0, matches / 3.0)
    return total / len(answers)


def vqa_score(predictions: Sequence[str], human_answers: Sequence[Sequence[str]]) -> float:
    """Mean VQA accuracy over questions, in percent."""
    _same_length(predictions, human_answers)
    return 100.0 * _mean(vqa_accuracy(p, h) for p, h in zip(predictions, human_answers))


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
