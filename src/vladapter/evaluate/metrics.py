"""The benchmarks' metrics, implemented to give the official numbers.

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

import re
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

# --- VQA answer normalisation (the rules of the official VQA evaluation) -------------

# The official evaluation's contraction table (GT-Vision-Lab/VQA, vqaEval.py), as
# "spelling(s) -> what it becomes": 120 spellings. Kept as it is, quirks included: the
# "I" forms have capitalised keys (answers are lower-cased first, so they never match),
# "let's" and "she's" map to themselves, and "somebody'd" loses its apostrophe.
_CONTRACTION_TABLE = """
aint>ain't arent>aren't cant>can't couldve>could've couldnt>couldn't
couldn'tve,couldnt've>couldn't've didnt>didn't doesnt>doesn't dont>don't hadnt>hadn't
hadnt've,hadn'tve>hadn't've hasnt>hasn't havent>haven't hed>he'd hed've,he'dve>he'd've
hes>he's howd>how'd howll>how'll hows>how's Id've,I'dve>I'd've Im>I'm Ive>I've isnt>isn't
itd>it'd itd've,it'dve>it'd've itll>it'll let's>let's maam>ma'am mightnt>mightn't
mightnt've,mightn'tve>mightn't've mightve>might've mustnt>mustn't mustve>must've
neednt>needn't notve>not've oclock>o'clock oughtnt>oughtn't ow's'at,'ows'at,'ow'sat>'ow's'at
shant>shan't shed've,she'dve>she'd've she's>she's shouldve>should've shouldnt>shouldn't
shouldnt've,shouldn'tve>shouldn't've somebody'd>somebodyd somebodyd've,somebody'dve>somebody'd've
somebodyll>somebody'll somebodys>somebody's someoned>someone'd someoned've,someone'dve>someone'd've
someonell>someone'll someones>someone's somethingd>something'd
somethingd've,something'dve>something'd've somethingll>something'll thats>that's thered>there'd
thered've,there'dve>there'd've therere>there're theres>there's theyd>they'd
theyd've,they'dve>they'd've theyll>they'll theyre>they're theyve>they've twas>'twas
wasnt>wasn't wed've,we'dve>we'd've weve>we've werent>weren't whatll>what'll whatre>what're
whats>what's whatve>what've whens>when's whered>where'd wheres>where's whereve>where've
whod>who'd whod've,who'dve>who'd've wholl>who'll whos>who's whove>who've whyll>why'll
whyre>why're whys>why's wont>won't wouldve>would've wouldnt>wouldn't
wouldnt've,wouldn'tve>wouldn't've yall>y'all yall'll,y'allll>y'all'll
yall'd've,y'alld've,y'all'dve>y'all'd've youd>you'd youd've,you'dve>you'd've youll>you'll
youre>you're youve>you've
"""
CONTRACTIONS: dict[str, str] = {
    spelling: written
    for entry in _CONTRACTION_TABLE.split()
    for spellings, written in [entry.split(">")]
    for spelling in spellings.split(",")
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
    # the official call passes re.UNICODE (32) where count goes: at most 32 periods go
    return _PERIOD.sub("", out, count=32)


def _digits_articles_contractions(text: str) -> str:
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words)


def _clean(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """The official VQA normalisation of an answer string: punctuation, number words ->
    digits, articles, contractions (lower-cased).

    >>> normalize_answer("Two dogs.")
    '2 dogs'
    """
    return _digits_articles_contractions(_strip_punctuation(_clean(answer)))


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
        pred, answers = _clean(prediction), [_clean(a) for a in human_answers]
        if len(set(answers)) > 1:
            pred, answers = normalize_answer(pred), [normalize_answer(a) for a in answers]
    elif evaluator == "vl-t5":
        pred, answers = normalize_answer(prediction), list(human_answers)
        if len(set(answers)) > 1:
            answers = [_strip_punctuation(a) for a in answers]
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
