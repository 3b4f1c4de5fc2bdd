"""Text about toy scenes: VQA and GQA questions, NLVR2 statements, captions.

Every generator takes a `random.Random` and returns text whose answer is computed from
the scene, so questions need the image. Families span easy (the colour of the single
circle) to compositional (how many red shapes are left of the square). Yes/no answers
are drawn 50/50 before the question is built, so a yes/no prior does not help.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from vladapter.data.toyworld.scene import COLOURS, SHAPES, SIZES, Scene, Shape

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def plural(shape: str, n: int = 2) -> str:
    if n == 1:
        return shape
    return shape + ("es" if shape.endswith("s") else "s")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    family: str
    answer_type: str  # yes/no | number | other (the VQAv2 answer types)
    question_type: str  # the VQAv2-style question prefix
    full_answer: str = ""


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _other_colour(rng: random.Random, colour: str) -> str:
    return rng.choice([c for c in COLOURS if c != colour])


def _absent_combination(rng: random.Random, scene: Scene) -> tuple[str, str] | None:
    for _ in range(20):
        c, s = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        if scene.count(c, s) == 0:
            return c, s
    return None


# ---------------------------------------------------------------- VQAv2-style questions

def _vqa_colour(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(shape=s.shape)]
    if not cands:
        return None
    s = rng.choice(cands)
    q = rng.choice(["What color is the {}?", "What is the color of the {}?", "Which color is the {}?"])
    return QA(q.format(s.shape), s.colour, "colour", "other", "what color is the")


def _vqa_shape(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(colour=s.colour)]
    if not cands:
        return None
    s = rng.choice(cands)
    q = rng.choice(["What shape is the {} object?", "What is the {} shape?", "Which shape is {}?"])
    return QA(q.format(s.colour), s.shape, "shape", "other", "what is the")


def _vqa_count_all(rng, scene):
    q = rng.choice(["How many shapes are there?", "How many objects are in the picture?",
                    "How many shapes are in the image?"])
    return QA(q, str(len(scene.shapes)), "count", "number", "how many")


def _vqa_count_colour(rng, scene):
    present = [s.colour for s in scene.shapes]
    c = rng.choice(present) if rng.random() < 0.7 else rng.choice(list(COLOURS))
    return QA(f"How many {c} shapes are there?", str(scene.count(colour=c)), "count_colour", "number", "how many")


def _vqa_count_shape(rng, scene):
    present = [s.shape for s in scene.shapes]
    s = rng.choice(present) if rng.random() < 0.7 else rng.choice(SHAPES)
    return QA(f"How many {plural(s)} are there?", str(scene.count(shape=s)), "count_shape", "number", "how many")


def _vqa_exists(rng, scene):
    if rng.random() < 0.5:
        s = rng.choice(scene.shapes)
        c, sh, ans = s.colour, s.shape, "yes"
    else:
        combo = _absent_combination(rng, scene)
        if combo is None:
            return None
        (c, sh), ans = combo, "no"
    return QA(f"Is there {article(c)} {c} {sh}?", ans, "exists", "yes/no", "is there a")


def _vqa_verify_colour(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(shape=s.shape)]
    if not cands:
        return None
    s = rng.choice(cands)
    c = s.colour if rng.random() < 0.5 else _other_colour(rng, s.colour)
    return QA(f"Is the {s.shape} {c}?", _yes_no(c == s.colour), "verify_colour", "yes/no", "is the")


def _vqa_where(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(s.colour, s.shape)]
    if not cands:
        return None
    s = rng.choice(cands)
    q = rng.choice(["Where is the {}?", "On which side is the {}?"])
    return QA(q.format(s.name), s.position, "where", "other", "where is the")


def _vqa_size(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(shape=s.shape)]
    if not cands:
        return None
    s = rng.choice(cands)
    q = rng.choice(["Is the {} large or small?", "What size is the {}?"])
    return QA(q.format(s.shape), s.size, "size", "other", "what size is the")


def _vqa_count_left_of(rng, scene):
    anchors = [s for s in scene.shapes if scene.unique(shape=s.shape)]
    if not anchors:
        return None
    a = rng.choice(anchors)
    sides = {side: [s for s in scene.shapes if (s.left_of(a) if side == "left" else s.right_of(a))]
             for side in ("left", "right")}
    occupied = [side for side, near in sides.items() if near]
    side = rng.choice(occupied) if occupied and rng.random() < 0.85 else rng.choice(["left", "right"])
    near = sides[side]
    # mostly ask about a colour that is there, or "0" would be the answer to learn
    c = rng.choice(near).colour if near and rng.random() < 0.75 else rng.choice(list(COLOURS))
    n = sum(1 for s in near if s.colour == c)
    return QA(f"How many {c} shapes are {side} of the {a.shape}?", str(n), "count_relation", "number", "how many")


def _vqa_colour_left_of(rng, scene):
    for a in rng.sample(scene.shapes, len(scene.shapes)):
        if not scene.unique(shape=a.shape):
            continue
        side = rng.choice(["left", "right"])
        near = [s for s in scene.shapes if (s.left_of(a) if side == "left" else s.right_of(a))]
        if len(near) == 1:
            return QA(f"What color is the shape to the {side} of the {a.shape}?", near[0].colour,
                      "colour_relation", "other", "what color is the")
    return None


VQA_FAMILIES: dict[str, Callable] = {
    "colour": _vqa_colour, "shape": _vqa_shape, "count": _vqa_count_all,
    "count_colour": _vqa_count_colour, "count_shape": _vqa_count_shape, "exists": _vqa_exists,
    "verify_colour": _vqa_verify_colour, "where": _vqa_where, "size": _vqa_size,
    "count_relation": _vqa_count_left_of, "colour_relation": _vqa_colour_left_of,
}


def _pick(rng: random.Random, scene: Scene, families: dict[str, Callable], k: int) -> list[QA]:
    """Up to ``k`` questions from distinct families, in a random family order."""
    out: list[QA] = []
    for name in rng.sample(list(families), len(families)):
        qa = families[name](rng, scene)
        if qa is not None:
            out.append(qa)
            if len(out) == k:
                break
    return out


def vqa_questions(rng: random.Random, scene: Scene, k: int) -> list[QA]:
    return _pick(rng, scene, VQA_FAMILIES, k)


# answers a human might give instead of the canonical one: (same meaning, differs from it)
SYNONYMS = {
    "circle": ["round", "circles"], "square": ["rectangle", "box"], "triangle": ["triangles"],
    "cross": ["plus", "plus sign"], "white": ["light gray"], "purple": ["violet"],
    "yellow": ["gold"], "left": ["on left", "left side"], "right": ["on right", "right side"],
    "middle": ["center", "in middle"], "large": ["big"], "small": ["tiny"],
    "yes": ["yes"], "no": ["no"],
}
CONFUSIONS = {"yes/no": ["yes", "no"], "colour": list(COLOURS), "shape": list(SHAPES),
              "size": list(SIZES), "where": ["left", "middle", "right"]}


def human_answers(rng: random.Random, qa: QA) -> list[str]:
    """Ten answers as VQA annotators give them: 6-10 agree with the canonical answer, the
    rest say it differently ("2" / "two", "circle" / "round") or get it wrong."""
    n_agree = rng.choices([10, 9, 8, 7, 6], weights=[30, 30, 20, 12, 8])[0]
    answers = [qa.answer] * n_agree
    while len(answers) < 10:
        if rng.random() < 0.5:
            if qa.answer_type == "number":
                alt = NUMBER_WORDS[int(qa.answer)]
            else:
                alt = rng.choice(SYNONYMS.get(qa.answer, [qa.answer]))
        elif qa.answer_type == "number":
            alt = str(max(0, int(qa.answer) + rng.choice([-1, 1])))
        elif qa.answer_type == "yes/no":
            alt = "no" if qa.answer == "yes" else "yes"
        else:
            pool = next((v for v in CONFUSIONS.values() if qa.answer in v), [qa.answer])
            alt = rng.choice(pool)
        answers.append(alt)
    rng.shuffle(answers)
    return answers


# ---------------------------------------------------------------- GQA-style questions

def _gqa_rel_colour(rng, scene):
    for b in rng.sample(scene.shapes, len(scene.shapes)):
        if not scene.unique(shape=b.shape):
            continue
        rel, test = rng.choice([("to the left of", Shape.left_of), ("to the right of", Shape.right_of),
                                ("above", Shape.above), ("below", Shape.below)])
        near = [s for s in scene.shapes if s is not b and test(s, b)]
        if len(near) == 1:
            a = near[0]
            return QA(f"What color is the {a.shape} {rel} the {b.shape}?", a.colour, "query_rel_colour",
                      "other", "query", f"The {a.shape} is {a.colour}.")
    return None


def _gqa_rel_shape(rng, scene):
    for b in rng.sample(scene.shapes, len(scene.shapes)):
        if not scene.unique(b.colour, b.shape):
            continue
        rel, test = rng.choice([("to the left of", Shape.left_of), ("to the right of", Shape.right_of),
                                ("above", Shape.above), ("below", Shape.below)])
        near = [s for s in scene.shapes if s is not b and test(s, b)]
        if len(near) == 1:
            a = near[0]
            return QA(f"What shape is {rel} the {b.name}?", a.shape, "query_rel_shape", "other", "query",
                      f"The {a.shape} is {rel} the {b.name}.")
    return None


def _gqa_choose_side(rng, scene):
    pairs = [(a, b) for a in scene.shapes for b in scene.shapes
             if a is not b and scene.unique(shape=a.shape) and scene.unique(shape=b.shape)
             and (a.left_of(b) or a.right_of(b))]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    side = "left" if a.left_of(b) else "right"
    return QA(f"Is the {a.shape} to the left or to the right of the {b.shape}?", side, "choose_rel",
              "other", "choose", f"The {a.shape} is to the {side} of the {b.shape}.")


def _gqa_same_colour(rng, scene):
    pairs = [(a, b) for a in scene.shapes for b in scene.shapes
             if a is not b and scene.unique(shape=a.shape) and scene.unique(shape=b.shape)]
    if not pairs:
        return None
    want = rng.random() < 0.5
    matching = [p for p in pairs if (p[0].colour == p[1].colour) == want]
    if not matching:  # usually no same-coloured pair: ask another family rather than skew to "no"
        return None
    a, b = rng.choice(matching)
    ans = _yes_no(want)
    full = f"{'Yes' if want else 'No'}, the {a.shape} and the {b.shape} are {'' if want else 'not '}the same color."
    return QA(f"Are the {a.shape} and the {b.shape} the same color?", ans, "compare_colour", "yes/no", "compare", full)


def _gqa_exists_rel(rng, scene):
    relations = [("to the left of", Shape.left_of), ("above", Shape.above)]
    options = [(b, rel, test) for b in scene.shapes if scene.unique(shape=b.shape) for rel, test in relations]
    if not options:
        return None
    want_yes = rng.random() < 0.5
    with_near = [o for o in options if any(s is not o[0] and o[2](s, o[0]) for s in scene.shapes)]
    b, rel, test = rng.choice(with_near if want_yes and with_near else options)
    near = [s for s in scene.shapes if s is not b and test(s, b)]
    if near and want_yes:
        a, ans = rng.choice(near), "yes"
        c, sh = a.colour, a.shape
    else:
        for _ in range(20):
            c, sh = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            if not any(s.colour == c and s.shape == sh for s in near):
                break
        ans = "no"
    full = f"{'Yes' if ans == 'yes' else 'No'}, there is {'a' if ans == 'yes' else 'no'} {c} {sh} {rel} the {b.shape}."
    return QA(f"Is there {article(c)} {c} {sh} {rel} the {b.shape}?", ans, "verify_rel", "yes/no", "verify", full)


def _gqa_bigger(rng, scene):
    pairs = [(a, b) for a in scene.shapes for b in scene.shapes
             if a is not b and scene.unique(shape=a.shape) and scene.unique(shape=b.shape) and a.size != b.size]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    big = a if SIZES[a.size] > SIZES[b.size] else b
    return QA(f"Which is bigger, the {a.shape} or the {b.shape}?", big.shape, "compare_size", "other",
              "compare", f"The {big.shape} is bigger.")


def _gqa_colour(rng, scene):
    cands = [s for s in scene.shapes if scene.unique(shape=s.shape)]
    if not cands:
        return None
    s = rng.choice(cands)
    return QA(f"Which color is the {s.size} {s.shape}?", s.colour, "query_colour", "other", "query",
              f"The {s.shape} is {s.colour}.")


GQA_FAMILIES: dict[str, Callable] = {
    "query_rel_colour": _gqa_rel_colour, "query_rel_shape": _gqa_rel_shape, "choose_rel": _gqa_choose_side,
    "compare_colour": _gqa_same_colour, "verify_rel": _gqa_exists_rel, "compare_size": _gqa_bigger,
    "query_colour": _gqa_colour,
}


def gqa_questions(rng: random.Random, scene: Scene, k: int) -> list[QA]:
    return _pick(rng, scene, GQA_FAMILIES, k)


# ---------------------------------------------------------------- NLVR2-style statements

@dataclass(frozen=True)
class Statement:
    sentence: str
    holds: Callable[[Scene, Scene], bool]


def _any_left_of(scene: Scene, colour: str, shape: str) -> bool:
    return any(a is not b and a.colour == colour and b.shape == shape and a.left_of(b)
               for a in scene.shapes for b in scene.shapes)


def random_statement(rng: random.Random) -> Statement:
    """One statement about an image pair (left, right) from a random template."""
    c, s, n = rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 3)
    templates = [
        (f"The left image contains exactly {NUMBER_WORDS[min(n, 2)]} {plural(s, min(n, 2))}.",
         lambda L, R: L.count(shape=s) == min(n, 2)),
        (f"The right image contains {article(c)} {c} {s}.", lambda L, R: R.count(c, s) >= 1),
        (f"There {'is' if n == 1 else 'are'} exactly {NUMBER_WORDS[n]} {c} {plural('shape', n)} in total.",
         lambda L, R: L.count(colour=c) + R.count(colour=c) == n),
        (f"Both images contain {article(s)} {s}.", lambda L, R: L.count(shape=s) >= 1 and R.count(shape=s) >= 1),
        (f"Exactly one image contains {article(c)} {c} shape.",
         lambda L, R: (L.count(colour=c) >= 1) != (R.count(colour=c) >= 1)),
        ("The left image contains more shapes than the right image.",
         lambda L, R: len(L.shapes) > len(R.shapes)),
        (f"In one of the images, {article(c)} {c} shape is to the left of {article(s)} {s}.",
         lambda L, R: _any_left_of(L, c, s) or _any_left_of(R, c, s)),
        (f"Each image contains at least {NUMBER_WORDS[n + 1]} shapes.",
         lambda L, R: min(len(L.shapes), len(R.shapes)) >= n + 1),
        (f"The right image has {NUMBER_WORDS[min(n, 2)]} {plural(s, min(n, 2))} and the left image has "
         f"{article(c)} {c} shape.", lambda L, R: R.count(shape=s) == min(n, 2) and L.count(colour=c) >= 1),
    ]
    sentence, holds = rng.choice(templates)
    return Statement(sentence, holds)


# ---------------------------------------------------------------- captions

def _phrase(s: Shape, rng: random.Random, with_size: bool) -> str:
    words = ([s.size] if with_size else []) + [s.colour, s.shape]
    return f"{article(words[0])} {' '.join(words)}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(rng: random.Random, scene: Scene, k: int = 5) -> list[str]:
    """``k`` distinct caption sentences (lowercase, no final period) describing the scene."""
    shapes = list(scene.shapes)
    n = len(shapes)
    out: list[str] = []
    makers = [
        lambda: _join([_phrase(s, rng, rng.random() < 0.5) for s in rng.sample(shapes, n)]),
        lambda: "there is " + _join([_phrase(s, rng, False) for s in rng.sample(shapes, n)]),
        lambda: f"{NUMBER_WORDS[n]} {plural('shape', n)} : " + _join([_phrase(s, rng, True) for s in shapes]),
        lambda: "an image with " + _join([_phrase(s, rng, False) for s in rng.sample(shapes, n)]),
        lambda: (lambda s: f"{_phrase(s, rng, True)} on the {s.position}")(rng.choice(shapes)),
        lambda: _relation_caption(rng, scene),
        lambda: _count_caption(scene),
    ]
    for _ in range(60):
        text = rng.choice(makers)()
        if text and text not in out:
            out.append(text)
            if len(out) == k:
                break
    while len(out) < k:  # tiny scenes have few distinct phrasings: repeat, as real annotators do
        out.append(out[len(out) % max(1, len(out))])
    return out


def _relation_caption(rng: random.Random, scene: Scene) -> str | None:
    pairs = [(a, b) for a in scene.shapes for b in scene.shapes if a is not b]
    rng.shuffle(pairs)
    for a, b in pairs:
        for rel, test in (("to the left of", Shape.left_of), ("above", Shape.above), ("below", Shape.below)):
            if test(a, b):
                return f"{_phrase(a, rng, False)} {rel} {_phrase(b, rng, False)}"
    return None


def _count_caption(scene: Scene) -> str:
    colours: dict[str, int] = {}
    for s in scene.shapes:
        colours[s.colour] = colours.get(s.colour, 0) + 1
    parts = [f"{NUMBER_WORDS[k]} {c} {plural('shape', k)}" for c, k in sorted(colours.items())]
    return _join(parts)


def to_karpathy_sentence(text: str, sentid: int, imgid: int) -> dict:
    """A Karpathy-format sentence: raw with a capital and a period, lowercase tokens."""
    raw = text[0].upper() + text[1:] + " ."
    tokens = [t for t in text.replace(",", " ").replace(":", " ").split() if t]
    return {"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid}
