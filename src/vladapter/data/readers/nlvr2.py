"""NLVR2: {train,dev,test1}.json, JSON lines {identifier, sentence, label "True"/"False", ...}.

identifier = "{split}-{set}-{pair}-{sentence}"; the pair's images are
"{split}-{set}-{pair}-img0" / "-img1" (the feature ids). The image archives unpack to
images/{dev,test1}/<id>.png and, for train, to the nested images/train/{0..99}/<id>.png,
the sub-folder named by the statement's "directory" field; a flat images/train/ works too. Consistency groups the pairs of
one sentence: group = "{split}-{set}-{sentence}". Prepared splits: train, val (dev),
test (test1 = test-P).
"""

from __future__ import annotations

from pathlib import Path

from vladapter.data.readers.common import Problems, field_of, json_lines, require
from vladapter.data.records import Record

SPLITS = {"train": "train", "dev": "val", "test1": "test"}
LABELS = {"True": "true", "False": "false", "true": "true", "false": "false"}
FIX_DOWNLOAD = "run `vladapter download nlvr2` (or `vladapter toyworld`)"


def read_file(path: Path, problems: Problems, split: str) -> list[Record]:
    out = []
    for lineno, obj in json_lines(path, problems):
        ident = field_of(obj, "identifier", path, f"line {lineno}", problems, str)
        if ident is None:
            continue
        where = f"line {lineno} ({ident})"
        sentence = field_of(obj, "sentence", path, where, problems, str)
        label = field_of(obj, "label", path, where, problems, str) if sentence is not None else None
        if label is None:
            continue
        parts = ident.split("-")
        if len(parts) != 4 or label not in LABELS:
            problems.bad("identifier must be split-set-pair-sentence and label True/False", path, where,
                         "fix the identifier / label")
            continue
        pair = "-".join(parts[:3])
        out.append(Record(uid=ident, task="nlvr", split=split, source="nlvr2",
                          images=[f"{pair}-img0", f"{pair}-img1"], text=sentence,
                          targets={LABELS[label]: 1.0}, references=[LABELS[label]],
                          group=f"{parts[0]}-{parts[1]}-{parts[3]}",
                          meta={"raw_split": parts[0], **({"directory": str(obj["directory"])}
                                                          if obj.get("directory") is not None else {})}))
    return out


def read(raw: Path, problems: Problems) -> dict[str, list[Record]]:
    return {split: read_file(require(raw / "nlvr2" / f"{name}.json", f"NLVR2 {name} statements", FIX_DOWNLOAD),
                             problems, split)
            for name, split in SPLITS.items()}


def media(raw: Path, record: Record) -> list[Path]:
    from vladapter.data.layout import images_dir

    folder = images_dir(raw / "nlvr2") / record.meta["raw_split"]
    nested = record.meta.get("directory")
    paths = []
    for img in record.images:
        flat = folder / f"{img}.png"
        paths.append(folder / nested / f"{img}.png" if nested is not None and not flat.exists() else flat)
    return paths
