"""Videos of the toy world: shapes that appear, move and change colour, written as mp4.

A `Clip` holds its shapes and a time line of `Event`s (at least 2 s apart). Each event
has a moment span around it (the `ts` of the published formats) that questions and
captions refer to. Subtitles are narrator lines timed with the events: they say *that*
something happens ("Something changed."), never what (no colours, shapes, directions),
so they do not give the answers away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import av
import numpy as np

from vladapter.data.toyworld.language import QA, article
from vladapter.data.toyworld.scene import CANVAS, COLOURS, SHAPES, Shape, place, random_scene, render_array

FPS = 5
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOVE_PX = 18  # distance travelled by a move event
MOVE_S = 1.6  # duration of a move event


@dataclass(frozen=True)
class Event:
    kind: str  # appear | move | change
    t: float  # seconds
    obj: int  # index into Clip.shapes
    value: str = ""  # move: direction; change: the new colour

    @property
    def span(self) -> list[float]:
        """The moment around the event: from a little before to a little after."""
        return [round(max(0.0, self.t - 1.0), 2), round(self.t + 2.0, 2)]


@dataclass
class Clip:
    name: str
    duration: float
    background: tuple[int, int, int]
    shapes: list[Shape]  # as first seen (initial position and colour)
    events: list[Event] = field(default_factory=list)
    subtitles: list[dict] = field(default_factory=list)

    def state(self, t: float) -> list[Shape]:
        """The shapes visible at time ``t`` with their current position and colour."""
        out = []
        for i, s in enumerate(self.shapes):
            x, y, colour, visible = s.x, s.y, s.colour, True
            for e in self.events:
                if e.obj != i:
                    continue
                if e.kind == "appear" and t < e.t:
                    visible = False
                elif e.kind == "change" and t >= e.t:
                    colour = e.value
                elif e.kind == "move" and t >= e.t:
                    dx, dy = DIRECTIONS[e.value]
                    frac = min(1.0, (t - e.t) / MOVE_S)
                    x, y = x + dx * MOVE_PX * frac, y + dy * MOVE_PX * frac
            if visible:
                out.append(Shape(s.shape, colour, s.size, x, y))
        return out

    def colour_at(self, i: int, t: float) -> str:
        colour = self.shapes[i].colour
        for e in self.events:
            if e.obj == i and e.kind == "change" and t >= e.t:
                colour = e.value
        return colour

    def attributes(self) -> dict:
        final = self.state(self.duration)
        return {
            "count": len(final), "count_start": len(self.state(0.0)),
            "colour": self.shapes[0].colour, "shape": self.shapes[0].shape,
            "events": [{"kind": e.kind, "t": e.t, "shape": self.shapes[e.obj].shape, "value": e.value}
                       for e in self.events],
        }


def _can_move(s: Shape, direction: str) -> bool:
    dx, dy = DIRECTIONS[direction]
    x, y = s.x + dx * MOVE_PX, s.y + dy * MOVE_PX
    return s.radius <= x <= CANVAS - s.radius and s.radius <= y <= CANVAS - s.radius


SUBTITLE_LINES = {
    "appear": ["Here comes something.", "Look, a new one!", "Something just arrived.", "Oh, who is this?"],
    "move": ["There it goes.", "It is on the move.", "Where is it going?", "Off it goes!"],
    "change": ["Whoa, did you see that?", "It looks different now.", "Something changed.", "Wait, what happened?"],
    "filler": ["Let's watch.", "Keep your eyes open.", "Okay.", "Hmm, interesting.", "Stay with me.", "Alright then."],
}


def random_clip(rng: random.Random, name: str, n_events: tuple[int, int], duration: tuple[float, float]) -> Clip:
    """A clip of ``duration`` seconds with distinct shapes (so "the circle" is unambiguous)
    and ``n_events`` events at least 2 s apart."""
    dur = round(rng.uniform(*duration), 1)
    n_ev = rng.randint(*n_events)
    start = random_scene(rng, 1, 2)
    shapes: list[Shape] = []
    for s in start.shapes:  # distinct shapes
        if all(s.shape != o.shape for o in shapes):
            shapes.append(s)
    times = [1.0 + 2.2 * k + rng.uniform(0, 0.6) for k in range(n_ev)]
    times = [round(t, 2) for t in times if t < dur - 2.0]
    events: list[Event] = []
    for t in times:
        kinds = ["move", "change"] + (["appear"] if len(shapes) < len(SHAPES) else [])
        kind = rng.choice(kinds)
        if kind == "appear":
            free = [sh for sh in SHAPES if all(sh != o.shape for o in shapes)]
            new = place(rng, rng.choice(free), rng.choice(list(COLOURS)), rng.choice(["small", "large"]),
                        Clip(name, dur, start.background, shapes, events).state(t))
            if new is None:
                kind = "change"
            else:
                shapes.append(new)
                events.append(Event("appear", t, len(shapes) - 1))
                continue
        visible = list(range(len(shapes)))  # events come in time order: every shape is on screen by now
        if kind == "move":
            clip = Clip(name, dur, start.background, shapes, events)
            now = {s.shape: s for s in clip.state(t)}
            options = [(i, d) for i in visible for d in DIRECTIONS
                       if shapes[i].shape in now and _can_move(now[shapes[i].shape], d)]
            # moving shapes may overlap others for a moment: harmless, later ones are drawn on top
            if options:
                i, d = rng.choice(options)
                events.append(Event("move", t, i, d))
                continue
        i = rng.choice(visible)
        current = Clip(name, dur, start.background, shapes, events).colour_at(i, t)
        events.append(Event("change", t, i, rng.choice([c for c in COLOURS if c != current])))
    clip = Clip(name, dur, start.background, shapes, events)
    clip.subtitles = _subtitles(rng, clip)
    return clip


def _subtitles(rng: random.Random, clip: Clip) -> list[dict]:
    subs = []
    for e in clip.events:
        subs.append({"start": round(e.t, 2), "end": round(e.t + 1.5, 2),
                     "text": rng.choice(SUBTITLE_LINES[e.kind])})
    t = 0.2
    while t < clip.duration - 1.0:  # fillers in the gaps
        if all(abs(t - s["start"]) > 1.2 for s in subs) and rng.random() < 0.5:
            subs.append({"start": round(t, 2), "end": round(t + 1.0, 2), "text": rng.choice(SUBTITLE_LINES["filler"])})
        t += 1.7
    return sorted(subs, key=lambda s: s["start"])


def frames(clip: Clip) -> np.ndarray:
    """uint8 (T, 64, 64, 3): the clip at FPS frames per second."""
    n = int(round(clip.duration * FPS))
    return np.stack([render_array(clip.state(k / FPS), clip.background) for k in range(n)])


def write_mp4(path, video: np.ndarray, fps: int = FPS) -> None:
    """Write RGB frames as an h264 mp4; the same frames always give the same bytes.

    Both settings are needed for that: one encoder thread, and no macroblock-tree rate
    control (x264's mbtree: with it, identical frames encoded twice in one process
    differed in about 1 of 20 encodes of these 64-pixel clips; without it none did).
    """
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "threads": "1", "crf": "18", "x264-params": "mbtree=0"}
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


# ---------------------------------------------------------------- questions and captions

def _name_at(clip: Clip, i: int, t: float) -> str:
    return f"{clip.colour_at(i, t)} {clip.shapes[i].shape}"


def event_question(rng: random.Random, clip: Clip, e: Event) -> QA:
    """A question answerable only by watching the event's moment."""
    shape = clip.shapes[e.obj].shape
    if e.kind == "appear":
        if rng.random() < 0.5:
            return QA("What appears?", f"{article(_name_at(clip, e.obj, e.t))} {_name_at(clip, e.obj, e.t)}",
                      "appear_what", "other", "what")
        return QA(f"What color is the {shape} that appears?", clip.colour_at(e.obj, e.t), "appear_colour",
                  "other", "what color")
    if e.kind == "change":
        r = rng.random()
        if r < 0.4:
            return QA(f"What color does the {shape} turn?", e.value, "change_to", "other", "what color")
        if r < 0.7:
            return QA(f"What color was the {shape} before it changed?", clip.colour_at(e.obj, e.t - 0.01),
                      "change_from", "other", "what color")
        return QA("Which shape changes color?", f"the {shape}", "change_which", "other", "which")
    if rng.random() < 0.6:
        return QA(f"Which way does the {shape} move?", f"it moves {e.value}", "move_direction", "other", "which")
    return QA("Which shape moves?", f"the {_name_at(clip, e.obj, e.t)}", "move_which", "other", "which")


def distractors(rng: random.Random, qa: QA, k: int) -> list[str]:
    """``k`` wrong answers of the same kind as the correct one."""
    ans = qa.answer
    if qa.family.startswith("move_direction"):
        pool = [f"it moves {d}" for d in DIRECTIONS] + ["it does not move", "it spins around"]
    elif qa.family in ("appear_what", "move_which"):
        prefix = "the " if ans.startswith("the ") else None
        pool = [(prefix or article(c) + " ") + f"{c} {s}" for c in COLOURS for s in SHAPES]
        # hard negatives first: share the colour or the shape with the answer
        hard = [p for p in pool if p != ans and (p.split()[-1] == ans.split()[-1] or p.split()[-2] == ans.split()[-2])]
        rng.shuffle(hard)
        rest = [p for p in pool if p != ans and p not in hard]
        rng.shuffle(rest)
        return (hard[: k - 1] + rest)[:k]
    elif qa.family == "change_which":
        pool = [f"the {s}" for s in SHAPES] + ["none of them"]
    else:
        pool = list(COLOURS)
    pool = [p for p in pool if p != ans]
    return rng.sample(pool, k)


def event_captions(rng: random.Random, clip: Clip, e: Event, k: int) -> list[str]:
    """``k`` distinct descriptions of the event (the references of TVC / YC2C)."""
    shape, before = clip.shapes[e.obj].shape, clip.colour_at(e.obj, e.t - 0.01)
    if e.kind == "appear":
        c = clip.colour_at(e.obj, e.t)
        pos = clip.shapes[e.obj].position
        options = [f"a {c} {shape} appears", f"a new {c} {shape} shows up", f"a {c} {shape} appears on the {pos}",
                   f"suddenly there is a {c} {shape}", f"a {clip.shapes[e.obj].size} {c} {shape} pops up"]
    elif e.kind == "change":
        options = [f"the {before} {shape} turns {e.value}", f"the {shape} changes from {before} to {e.value}",
                   f"the {shape} becomes {e.value}", f"the {before} {shape} changes color to {e.value}",
                   f"the color of the {shape} changes to {e.value}"]
    else:
        d = e.value
        options = [f"the {before} {shape} moves {d}", f"the {shape} slides to the {d}" if d in ("left", "right")
                   else f"the {shape} slides {d}", f"the {before} {shape} goes {d}",
                   f"a {before} {shape} moves {d}", f"the {shape} travels {d}"]
    return rng.sample(options, k)
