"""VQAv2: official questions + annotations JSON; split by the Karpathy split of the image."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from vladapter.evaluate.metrics import normalize_answer


def soft_scores(answers: Iterable[str]) -> dict[str, float]:
    """VL-T5 / LXMERT soft targets: each normalised answer given by n of the 10 humans
    scores min(1, 0.3 * n) (1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4+ -> 1.0)."""
    counts = Counter(normalize_answer(a) for a in answers)
    return {a: round(min(1.0, 0.3 * n), 2) for a, n in counts.items()}
