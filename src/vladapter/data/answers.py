"""VQA answer normalisation, the rules of the official VQA evaluation (GT-Vision-Lab/VQA
vqaEval.py): punctuation, number words -> digits, articles, contractions. Data
preparation normalises the soft-score targets with it (as VL-T5 does) and the VQA metric
(vladapter.metrics) matches answers with it."""

from __future__ import annotations

import re

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


def strip_punctuation(text: str) -> str:
    """The official punctuation rule (processPunctuation)."""
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


def clean(answer: str) -> str:
    """Newlines and tabs as spaces, surrounding space removed (the official first step)."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """The official VQA normalisation of an answer string: punctuation, number words ->
    digits, articles, contractions (lower-cased).

    >>> normalize_answer("Two dogs.")
    '2 dogs'
    """
    return _digits_articles_contractions(strip_punctuation(clean(answer)))
