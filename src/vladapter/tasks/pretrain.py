"""VL pre-training objectives (VL-T5 style) on the pre-training split.

Records of task "pretrain" are captions (meta kind "caption": references = the image's
captions) or questions (meta kind "qa": targets = answer scores). Objectives:

- span: masked span prediction. About 15% of a caption's words, in spans of ~3 words,
  are replaced by sentinels: "pretrain caption: a <extra_id_0> circle <extra_id_1>" ->
  "<extra_id_0> red <extra_id_1> on the left". Without sentinel tokens (BART) the spans
  become "<mask>" and the target is the whole caption (BART's text infilling).
- itm: image-text matching: "pretrain true false: {caption}" -> "true", or "false" when
  the caption belongs to another image (half of the time).
- prefix: prefix language modelling: "caption: {first k words}" -> the rest of the
  caption; k = 0 (half of the time) is plain captioning in the caption task's own format.
(The prompts use words the toy tokenizer always knows, unlike VL-T5's "span prediction:".)
- qa: "vqa: {question}" -> an answer sampled by score (as the VQA task).
- pair: which of two images a caption describes: "pretrain left right: {caption}" with the
  caption's image and another image of the split side by side (NLVR2's two-image input,
  image order 0 / 1) -> "left" or "right". VL-T5 has no two-image objective; the toy
  world's NLVR2 statements are about one image of the pair or both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from vladapter.data.records import Record
from vladapter.tasks.base import Example, Task
from vladapter.tasks.caption import references
from vladapter.tasks.vqa import VQATask

OBJECTIVES = ("span", "prefix", "itm", "qa", "pair")
KIND = {"span": "caption", "prefix": "caption", "itm": "caption", "qa": "qa", "pair": "caption"}
SIDES = ("left", "right")


class SpanObjective(Task):
    name = "span"
    prefix = "pretrain caption:"
    max_input_tokens = 40
    max_target_tokens = 24

    def __init__(self, sentinel: str | None = "<extra_id_{}>", mask_token: str = "<mask>",
                 mask_ratio: float = 0.15, mean_span: float = 3.0):
        self.sentinel = sentinel
        self.mask_token = mask_token
        self.mask_ratio = mask_ratio
        self.mean_span = mean_span

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        caption = _pick_caption(record, rng)
        words = caption.split()
        masked = self.mask(len(words), rng)
        source, target, k = [], [], 0
        for i, w in enumerate(words):
            if not masked[i]:
                source.append(w)
                continue
            if i == 0 or not masked[i - 1]:  # a new span
                token = self.sentinel.format(k) if self.sentinel else self.mask_token
                source.append(token)
                if self.sentinel:
                    target.append(token)
                k += 1
            if self.sentinel:
                target.append(w)
        text = " ".join(source)
        return Example(self._with_prefix(text, True), " ".join(target) if self.sentinel else caption)

    def mask(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask over ``n`` words: spans (geometric lengths) covering ~mask_ratio, at least one word."""
        masked = np.zeros(n, dtype=bool)
        goal = max(1, int(round(n * self.mask_ratio)))
        while masked.sum() < goal:
            length = min(int(rng.geometric(1.0 / self.mean_span)), goal - int(masked.sum()))
            start = int(rng.integers(0, max(1, n - length + 1)))
            masked[start:start + length] = True
        return masked


class PrefixObjective(Task):
    name = "prefix"
    prefix = "caption:"  # the downstream caption task's prefix: k = 0 is captioning itself
    max_input_tokens = 40
    max_target_tokens = 40

    def __init__(self, captioning: float = 0.5):
        self.captioning = captioning  # share of examples with an empty prefix (k = 0)

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        words = _pick_caption(record, rng).split()
        k = 0 if len(words) < 2 or rng.random() < self.captioning else int(rng.integers(1, len(words)))
        return Example(self._with_prefix(" ".join(words[:k]), True), " ".join(words[k:]))


class MatchObjective(Task):
    name = "itm"
    prefix = "pretrain true false:"
    max_input_tokens = 40
    max_target_tokens = 2

    def __init__(self, captions: Sequence[Record]):
        # negatives are drawn from the other images' captions
        self.pool = list(captions)

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        if rng.random() < 0.5:
            for _ in range(8):  # a caption of another image (a few tries: the pool may repeat images)
                other = self.pool[int(rng.integers(len(self.pool)))]
                if other.images != record.images:
                    return Example(self._with_prefix(_pick_caption(other, rng), True), "false")
        return Example(self._with_prefix(_pick_caption(record, rng), True), "true")


class PairObjective(Task):
    name = "pair"
    prefix = "pretrain left right:"
    max_input_tokens = 40
    max_target_tokens = 2

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        return Example(self._with_prefix(_pick_caption(record, rng), True), record.meta["side"])


def image_pairs(captions: Sequence[Record], seed: int) -> list[Record]:
    """Each caption record with a second image: another record's, drawn at random, on a
    random side (``meta["side"]`` = where the captioned image is). Fixed by ``seed``, so
    --resume and every DDP rank see the same pairs."""
    rng = np.random.default_rng(seed)
    n, pairs = len(captions), []
    if len({tuple(r.images) for r in captions}) < 2:
        return pairs  # nothing to pair with
    for i, record in enumerate(captions):
        j = int(rng.integers(n - 1))
        j += j >= i  # any record but this one
        while captions[j].images == record.images:  # the split may repeat an image
            j = int(rng.integers(n))
        side = SIDES[int(rng.integers(2))]
        first, second = (record, captions[j]) if side == "left" else (captions[j], record)
        pairs.append(replace(record, uid=f"{record.uid}-pair", images=[*first.images, *second.images],
                             meta={**record.meta, "side": side}))
    return pairs


class QAObjective(VQATask):
    name = "qa"

    def example(self, record: Record, rng: np.random.Generator, prefix: bool) -> Example:
        return super().example(record, rng, True)


def _pick_caption(record: Record, rng: np.random.Generator) -> str:
    refs = references(record)
    if not refs:
        raise ValueError(f"pre-training caption record {record.uid} has no captions")
    return refs[int(rng.integers(len(refs)))]


def split_by_kind(records: Sequence[Record]) -> dict[str, list[Record]]:
    """Pre-training records grouped by meta kind (caption | qa)."""
    out: dict[str, list[Record]] = {"caption": [], "qa": []}
    for r in records:
        kind = r.meta.get("kind") or ("qa" if r.text else "caption")
        out.setdefault(kind, []).append(r)
    return out


def objectives(names: Sequence[str], records: Sequence[Record], sentinels: bool,
               seed: int = 0) -> dict[str, tuple[Task, list[Record]]]:
    """objective name -> (objective, its records); objectives without records are left out.
    ``seed`` draws the image pairs of ``pair``."""
    from vladapter.errors import ConfigError

    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"unknown pre-training objectives {unknown} (known: {', '.join(OBJECTIVES)})")
    kinds = split_by_kind(records)
    make = {"span": lambda: SpanObjective(None if not sentinels else "<extra_id_{}>"),
            "prefix": PrefixObjective,
            "itm": lambda: MatchObjective(kinds["caption"]),
            "qa": QAObjective,
            "pair": PairObjective}
    data = {n: kinds[KIND[n]] if n != "pair" else image_pairs(kinds["caption"], seed) for n in names}
    return {n: (make[n](), data[n]) for n in names if data[n]}


def batch_scales() -> dict[str, float]:
    """Objective name -> its batch scale (each objective's batches are a task's batches)."""
    classes = {"span": SpanObjective, "prefix": PrefixObjective, "itm": MatchObjective, "qa": QAObjective,
               "pair": PairObjective}
    return {n: classes[n].batch_scale for n in OBJECTIVES}
