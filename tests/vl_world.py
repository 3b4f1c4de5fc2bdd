"""A tiny, fast vision-language world for the training/evaluation tests.

Prepared records (data/prepared layout), feature HDF5 files in the documented layout
(data/features/<source>.<backbone>.h5) and a word-level tokenizer, built in a few
hundred milliseconds. The visual features carry each image's colour as a one-hot block,
so a model that learns anything answers far above chance.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from vladapter.data.records import Record
from vladapter.utils.io import write_jsonl

COLOURS = ["red", "green", "blue", "yellow"]
DIM = 16
GRID = 4  # 4x4 = 16 grid tokens per image


def _image_feature(rng, colour: int) -> np.ndarray:
    x = rng.normal(0, 0.3, size=(GRID * GRID, DIM))
    x[:, colour] += 2.0
    return x.astype(np.float16)


def _write_grid(path: Path, feats: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(backbone="testclip", kind="grid", grid=(GRID, GRID), dim=DIM, config="{}", preprocessing="{}")
        for k, v in feats.items():
            f.create_dataset(k, data=v)
            f.create_dataset(f"pooled/{k}", data=v.mean(0))


def _write_frames(path: Path, feats: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(backbone="testclip", kind="frames", dim=DIM, config="{}", preprocessing="{}")
        for k, v in feats.items():
            ds = f.create_dataset(k, data=v)
            ds.attrs["timestamps"] = np.arange(len(v), dtype=np.float32) * 1.5


def build(root: Path, n_train: int = 48, n_test: int = 16, seed: int = 0,
          tasks=("vqa", "nlvr", "caption", "tvqa")) -> dict[str, Path]:
    """Write the world under ``root``; returns its paths (prepared, features, tokenizer)."""
    from vladapter.models.tokenizer import build_tokenizer

    rng = np.random.default_rng(seed)
    prepared, features = root / "prepared", root / "features"
    images, videos = {}, {}
    splits = {"train": n_train, "test": n_test}
    for split, n in splits.items():
        recs: dict[str, list[Record]] = {t: [] for t in tasks if t != "pretrain"}
        for i in range(n):
            c = int(rng.integers(len(COLOURS)))
            img = f"img-{split}-{i}"
            images[img] = _image_feature(rng, c)
            colour = COLOURS[c]
            recs.get("vqa", []).append(Record(
                uid=f"{split}{i}", task="vqa", split=split, source="coco", images=[img],
                text="what colour is the shape?", targets={colour: 1.0, COLOURS[(c + 1) % 4]: 0.3},
                references=[colour] * 8 + [COLOURS[(c + 1) % 4]] * 2))
            recs.get("caption", []).append(Record(
                uid=f"{split}{i}", task="caption", split=split, source="coco", images=[img],
                targets={f"a {colour} shape": 1.0, f"one {colour} shape": 1.0},
                references=[f"a {colour} shape", f"one {colour} shape"]))
            if "nlvr" in tasks:
                c1 = int(rng.integers(len(COLOURS)))
                pair = [f"pair-{split}-{i}-img0", f"pair-{split}-{i}-img1"]
                images[pair[0]], images[pair[1]] = _image_feature(rng, c), _image_feature(rng, c1)
                asked = COLOURS[int(rng.integers(len(COLOURS)))]
                label = "true" if asked == colour else "false"
                recs["nlvr"].append(Record(
                    uid=f"{split}-{i}", task="nlvr", split=split, source="nlvr2", images=pair,
                    text=f"the left image is {asked}", targets={label: 1.0}, group=f"{asked}-{i // 2}"))
            if "tvqa" in tasks:
                vid = f"vid-{split}-{i}"
                frames = rng.normal(0, 0.3, size=(int(rng.integers(6, 12)), DIM))
                frames[:, c] += 2.0
                videos[vid] = frames.astype(np.float16)
                order = rng.permutation(len(COLOURS))
                recs["tvqa"].append(Record(
                    uid=str(1000 + i), task="tvqa", split=split, source="tvqa", video=vid, span=[0.0, 9.0],
                    text="which colour is shown?", context="hello there . look at this",
                    choices=[COLOURS[j] for j in order] + ["none"], answer_idx=int(np.where(order == c)[0][0])))
        for task, rows in recs.items():
            if task == "pretrain":
                continue
            dataset = {"vqa": "vqav2", "nlvr": "nlvr2", "caption": "coco", "tvqa": "tvqa"}[task]
            write_jsonl(prepared / dataset / f"{split}.jsonl", (r.to_dict() for r in rows))
    if "pretrain" in tasks:  # captions and QA on their own images, as the pre-training split
        rows = []
        for i in range(n_train):
            c = int(rng.integers(len(COLOURS)))
            img = f"pt-{i}"
            images[img] = _image_feature(rng, c)
            rows.append(Record(uid=f"cap-{i}", task="pretrain", split="train", source="pretrain", images=[img],
                               references=[f"a {COLOURS[c]} shape", f"one {COLOURS[c]} shape"],
                               meta={"kind": "caption"}))
            rows.append(Record(uid=f"qa-{i}", task="pretrain", split="train", source="pretrain", images=[img],
                               text="what colour is the shape?", targets={COLOURS[c]: 1.0}, meta={"kind": "qa"}))
        write_jsonl(prepared / "pretrain" / "train.jsonl", (r.to_dict() for r in rows))
        _write_grid(features / "pretrain.testclip.h5", {k: v for k, v in images.items() if k.startswith("pt-")})
    coco = {k: v for k, v in images.items() if k.startswith("img-")}
    _write_grid(features / "coco.testclip.h5", coco)
    _write_grid(features / "nlvr2.testclip.h5", {k: v for k, v in images.items() if k.startswith("pair-")})
    if videos:
        _write_frames(features / "tvqa.testclip.h5", videos)
    texts = ["what colour is the shape ? the left image is which colour is shown ? hello there . look at this",
             "a one shape none pretrain caption true false", *COLOURS]
    tok = build_tokenizer(texts)
    tok.save_pretrained(str(root / "tokenizer"))
    return {"prepared": prepared, "features": features, "tokenizer": root / "tokenizer"}
