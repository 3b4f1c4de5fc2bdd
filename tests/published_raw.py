"""A miniature of the image datasets in the layouts their published archives unpack to.

``write_published_raw(root)`` writes, under ``root``::

    coco/dataset_coco.json               Karpathy's file (from caption_datasets.zip)
    coco/train2014/COCO_train2014_*.jpg  train2014.zip and val2014.zip unpacked in place
    coco/val2014/COCO_val2014_*.jpg
    vqav2/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json, v2_mscoco_*_annotations.json
    gqa/{train,val,testdev}_balanced_questions.json, gqa/images/<imageId>.jpg
    nlvr2/{train,dev,test1}.json, nlvr2/images/train/<directory>/*.png (nested, as released),
    nlvr2/images/{dev,test1}/*.png

The question texts are real VQAv2 questions (tests/fixtures/real/vqav2); images are small
random pictures. ``per_split`` sets how many records each split gets.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REAL = HERE / "fixtures" / "real"
ANSWERS = ["yes", "no", "2", "red", "dog", "table"]


def _image(path: Path, rng: random.Random, size=(80, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    img.paste(tuple(rng.randrange(256) for _ in range(3)), (10, 10, 40, 40))
    img.save(path)


def _questions(n: int) -> list[str]:
    data = json.loads((REAL / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())
    return [q["question"] for q in data["questions"][:n]]


def write_published_raw(root: str | Path, per_split: int = 3, seed: int = 0) -> Path:
    """Write the miniature (see the module docstring); returns ``root``."""
    root, rng = Path(root), random.Random(seed)
    texts = _questions(8 * per_split)

    # COCO: Karpathy train (+restval) / val / test images, split between train2014 and val2014
    karpathy, vqa = [], {"train2014": ([], []), "val2014": ([], [])}
    splits = ["train"] * per_split + ["restval"] + ["val"] * per_split + ["test"] * per_split
    for i, split in enumerate(splits):
        sub = "train2014" if split == "train" else "val2014"
        cocoid = 1000 + i
        name = f"COCO_{sub}_{cocoid:012d}.jpg"
        _image(root / "coco" / sub / name, rng)
        karpathy.append({"filepath": sub, "filename": name, "cocoid": cocoid, "imgid": i, "split": split,
                         "sentences": [{"raw": f"A picture number {i} of a {w}.", "tokens": []}
                                       for w in ("dog", "table")]})
        qid = cocoid * 10
        vqa[sub][0].append({"image_id": cocoid, "question": texts[i % len(texts)], "question_id": qid})
        vqa[sub][1].append({"question_id": qid, "image_id": cocoid, "answer_type": "other",
                            "question_type": "what", "multiple_choice_answer": ANSWERS[i % 6],
                            "answers": [{"answer": ANSWERS[(i + k // 7) % 6], "answer_confidence": "yes",
                                         "answer_id": k + 1} for k in range(10)]})
    _write(root / "coco" / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})
    for sub, (questions, annotations) in vqa.items():
        _write(root / "vqav2" / f"v2_OpenEnded_mscoco_{sub}_questions.json",
               {"task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": sub, "questions": questions})
        _write(root / "vqav2" / f"v2_mscoco_{sub}_annotations.json",
               {"data_type": "mscoco", "data_subtype": sub, "annotations": annotations})

    # GQA: balanced questions per split, images/<imageId>.jpg
    for s, name in enumerate(("train", "val", "testdev")):
        questions = {}
        for j in range(per_split):
            image = f"n{s}{j:05d}"
            _image(root / "gqa" / "images" / f"{image}.jpg", rng)
            questions[f"{s}{j:07d}"] = {"imageId": image, "question": texts[(3 * j + s) % len(texts)],
                                        "answer": ANSWERS[(j + s) % 6], "fullAnswer": "It is.", "isBalanced": True}
        _write(root / "gqa" / f"{name}_balanced_questions.json", questions)

    # NLVR2: JSON lines; train images nested under the statement's "directory"
    for name in ("train", "dev", "test1"):
        lines = []
        for j in range(per_split):
            ident = f"{name}-{10 + j}-{j % 2}-0"
            pair = ident.rsplit("-", 1)[0]
            record = {"identifier": ident, "sentence": texts[j % len(texts)], "label": ["True", "False"][j % 2]}
            folder = root / "nlvr2" / "images" / name
            if name == "train":
                record["directory"] = j % 2
                folder = folder / str(j % 2)
            for side in ("img0", "img1"):
                _image(folder / f"{pair}-{side}.png", rng)
            lines.append(json.dumps(record))
        (root / "nlvr2").mkdir(parents=True, exist_ok=True)
        (root / "nlvr2" / f"{name}.json").write_text("\n".join(lines) + "\n")
    return root


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def tree_state(root: str | Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``root``: equal before and after = untouched."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}
