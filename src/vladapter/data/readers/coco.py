"""COCO captions: Karpathy's dataset_coco.json (the paper's splits) and the official format.

Karpathy format: {"images": [{filename, filepath?, cocoid?, split, sentences: [{raw, tokens}]}]}
(Flickr8k/30k files share it without filepath/cocoid). One Record per image with every
caption as a reference; "restval" is merged into train. Images without sentences (the
tail of some Karpathy files) are left out without complaint: they carry nothing.
Official format (captions_val2014.json): {images: [{id, file_name}], annotations:
[{image_id, caption}]}.
"""

from __future__ import annotations

from pathlib import Path

from vladapter.data.readers.common import Problems, load_json, require
from vladapter.data.records import Record
from vladapter.errors import DataError

KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
FIX_DOWNLOAD = "run `vladapter download coco` (or `vladapter toyworld`)"


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0]


def read_karpathy(path: Path, problems: Problems, task: str = "caption", source: str = "coco") -> list[Record]:
    """One caption Record per image of a Karpathy-format file; split = prepared split name."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError("not a Karpathy captions file (no 'images' list)", path=path, fix=FIX_DOWNLOAD)
    out = []
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]" + (f" ({img.get('filename')})" if isinstance(img, dict) else "")
        if not isinstance(img, dict) or not isinstance(img.get("filename"), str):
            problems.bad("image entry needs a filename", path, where, "fix or remove the entry")
            continue
        split = KARPATHY_SPLITS.get(img.get("split"))
        if split is None:
            problems.bad(f"unknown split {img.get('split')!r} (expected {', '.join(KARPATHY_SPLITS)})",
                         path, where, "fix the split name")
            continue
        sentences = img.get("sentences") or []
        try:
            refs = [s["raw"].strip() for s in sentences]
        except (TypeError, KeyError, AttributeError):
            problems.bad("sentences need a 'raw' string", path, where, "fix the sentences")
            continue
        if not refs:
            continue
        uid = str(img.get("cocoid", img.get("imgid", _stem(img["filename"]))))
        meta = {"image_id": img["cocoid"]} if "cocoid" in img else {}
        meta["file"] = f"{img['filepath']}/{img['filename']}" if img.get("filepath") else img["filename"]
        out.append(Record(uid=uid, task=task, split=split, source=source, images=[_stem(img["filename"])],
                          targets={r: 1.0 for r in refs}, references=refs, meta=meta))
    return out


def read_official(path: Path, problems: Problems, split: str = "val") -> list[Record]:
    """One caption Record per image of an official COCO captions file (e.g. captions_val2014.json)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError("not an official COCO captions file (needs 'images' and 'annotations')", path=path,
                        fix="download annotations_trainval2014.zip from cocodataset.org")
    files = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            problems.bad("image entry needs id and file_name", path, f"images[{i}]", "fix or remove the entry")
            continue
        files[img["id"]] = img["file_name"]
    refs: dict[int, list[str]] = {}
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in files or not isinstance(ann.get("caption"), str):
            problems.bad("annotation needs a known image_id and a caption", path, f"annotations[{i}]",
                         "fix or remove the annotation")
            continue
        refs.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    return [Record(uid=str(image_id), task="caption", split=split, source="coco", images=[_stem(files[image_id])],
                   targets={c: 1.0 for c in caps}, references=caps, meta={"image_id": image_id})
            for image_id, caps in refs.items()]


def karpathy_path(raw: Path) -> Path:
    return require(raw / "coco" / "dataset_coco.json", "Karpathy COCO split (dataset_coco.json)", FIX_DOWNLOAD)


def karpathy_splits(raw: Path, problems: Problems) -> dict[str, str]:
    """COCO image stem -> prepared split, from the Karpathy file (VQAv2 uses COCO's splits)."""
    return {r.images[0]: r.split for r in read_karpathy(karpathy_path(raw), problems)}


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for r in read_karpathy(karpathy_path(raw), problems):
        out[r.split].append(r)
    return out


def media(raw: Path, record: Record) -> list[Path]:
    from vladapter.data.layout import images_dir

    return [images_dir(raw / "coco") / record.meta["file"]]
