"""Scenes of the toy world: coloured shapes on a plain background, and how to draw them.

A scene is a list of `Shape`s (shape, colour, size, centre) on a 64x64 canvas. Shapes are
large enough to span several 8-px patches (small: 16 px wide, large: 26 px), so a tiny
CLIP with patch size 8 can see their silhouettes. Everything is drawn with PIL from the
scene description alone, so rendering is a pure function (and can run in a worker pool).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 64
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 45, 45),
    "green": (50, 175, 70),
    "blue": (45, 90, 230),
    "yellow": (235, 210, 45),
    "purple": (155, 65, 200),
    "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle", "cross")
# half-width in pixels
SIZES = {"small": 8, "large": 13}
POSITIONS = ("left", "middle", "right")
# darker, muted backgrounds: every colour above stays visible on every one of them
BACKGROUNDS = ((70, 70, 75), (95, 90, 85), (60, 75, 70), (80, 70, 90), (105, 105, 110))
# centres closer than this (px) along an axis are neither left/right nor above/below
RELATION_MARGIN = 6


@dataclass(frozen=True)
class Shape:
    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def radius(self) -> int:
        return SIZES[self.size]

    @property
    def position(self) -> str:
        """Horizontal third of the canvas the centre lies in."""
        third = CANVAS / 3
        return POSITIONS[min(2, int(self.x // third))]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def left_of(self, other: "Shape") -> bool:
        return self.x < other.x - RELATION_MARGIN

    def right_of(self, other: "Shape") -> bool:
        return other.left_of(self)

    def above(self, other: "Shape") -> bool:
        return self.y < other.y - RELATION_MARGIN

    def below(self, other: "Shape") -> bool:
        return other.above(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["x"], d["y"] = round(self.x, 1), round(self.y, 1)
        d["position"] = self.position
        return d


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: tuple[int, int, int]

    def count(self, colour: str | None = None, shape: str | None = None) -> int:
        return sum(1 for s in self.shapes
                   if (colour is None or s.colour == colour) and (shape is None or s.shape == shape))

    def unique(self, colour: str | None = None, shape: str | None = None) -> Shape | None:
        """The one shape matching colour/shape, or None when there are zero or several."""
        found = [s for s in self.shapes
                 if (colour is None or s.colour == colour) and (shape is None or s.shape == shape)]
        return found[0] if len(found) == 1 else None

    def attributes(self) -> dict:
        """Linear-probe labels: the largest (then first) shape's attributes plus the count."""
        main = max(self.shapes, key=lambda s: SIZES[s.size])
        return {
            "colour": main.colour, "shape": main.shape, "size": main.size,
            "position": main.position, "count": len(self.shapes),
            "shapes": [s.to_dict() for s in self.shapes],
        }


def _fits(candidate: Shape, placed: list[Shape]) -> bool:
    for s in placed:
        gap = candidate.radius + s.radius + 2
        if (candidate.x - s.x) ** 2 + (candidate.y - s.y) ** 2 < gap * gap:
            return False
    return True


def place(rng: random.Random, shape: str, colour: str, size: str, placed: list[Shape]) -> Shape | None:
    """A non-overlapping placement inside the canvas, or None when none was found quickly."""
    r = SIZES[size]
    lo, hi = r + 1, CANVAS - r - 1
    third = CANVAS / 3
    for _ in range(60):
        # a random third first, so left / middle / right are equally likely for every size
        k = rng.randrange(3)
        x = rng.uniform(max(lo, k * third + 0.5), min(hi, (k + 1) * third - 0.5))
        cand = Shape(shape, colour, size, x, rng.uniform(lo, hi))
        if _fits(cand, placed):
            return cand
    return None


def random_scene(rng: random.Random, n_min: int = 1, n_max: int = 4) -> Scene:
    """1-4 non-overlapping shapes with uniform colours/shapes; large shapes shrink when crowded."""
    n = rng.randint(n_min, n_max)
    placed: list[Shape] = []
    for _ in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        # repeats make counts above one and "which of the two" questions common
        if placed and rng.random() < 0.35:
            colour = rng.choice(placed).colour
        if placed and rng.random() < 0.25:
            shape = rng.choice(placed).shape
        size = rng.choice(list(SIZES))
        s = place(rng, shape, colour, size, placed) or place(rng, shape, colour, "small", placed)
        if s is not None:
            placed.append(s)
    if not placed:  # cannot happen on an empty canvas, but keep the promise of >= 1 shape
        placed.append(Shape(rng.choice(SHAPES), rng.choice(list(COLOURS)), "small", CANVAS / 2, CANVAS / 2))
    return Scene(tuple(placed), rng.choice(BACKGROUNDS))


def draw_shape(draw: ImageDraw.ImageDraw, s: Shape) -> None:
    x, y, r = s.x, s.y, s.radius
    fill = COLOURS[s.colour]
    if s.shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif s.shape == "square":
        h = r * 0.85  # same visual weight as the circle
        draw.rectangle((x - h, y - h, x + h, y + h), fill=fill)
    elif s.shape == "triangle":
        draw.polygon(((x, y - r), (x - r, y + r * 0.8), (x + r, y + r * 0.8)), fill=fill)
    elif s.shape == "cross":
        w = r * 0.36
        draw.rectangle((x - r, y - w, x + r, y + w), fill=fill)
        draw.rectangle((x - w, y - r, x + w, y + r), fill=fill)
    else:
        raise ValueError(f"unknown shape {s.shape!r}")


def render(shapes, background) -> Image.Image:
    """The canvas with ``shapes`` drawn in order (later ones on top)."""
    img = Image.new("RGB", (CANVAS, CANVAS), tuple(background))
    draw = ImageDraw.Draw(img)
    for s in shapes:
        draw_shape(draw, s)
    return img


def render_array(shapes, background) -> np.ndarray:
    return np.asarray(render(shapes, background))
