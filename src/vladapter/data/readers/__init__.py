"""Readers of the published dataset formats -> `Record`s, one small module per format.

``read_dataset(name, raw)`` reads one dataset of the raw layout (docs/ARCHITECTURE.md)
into {prepared split: [Record]}; the same readers run on real downloads and on the toy
world. File-level readers (one published file each) live in the modules:

    vqav2.read_questions / read_annotations / records     coco.read_karpathy / read_official
    gqa.read_questions     nlvr2.read_file                 tvqa.read_jsonl / read_tvqa_plus
    how2qa.read_csv        value_captions.read_value_jsonl / read_tvr / read_youcook2
    pretrain.read_vlt5_qa  common.read_subtitles
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from vladapter.data.datasets import DATASETS
from vladapter.data.readers.common import Problems
from vladapter.data.records import Record
from vladapter.errors import ConfigError

SPLITS = ("train", "val", "test")


def _functions(name: str) -> tuple[Callable, Callable]:
    """The dataset's reader and media functions, from its spec (``DatasetSpec.reader``)."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    module, read = DATASETS[name].reader_function
    mod = importlib.import_module(module)
    return getattr(mod, read), getattr(mod, "media")


def read_dataset(name: str, raw, problems: Problems | None = None,
                 check_media: bool = False) -> dict[str, list[Record]]:
    """{train, val, test: [Record]} of dataset ``name`` under the raw root ``raw`` (a folder,
    or a :class:`vladapter.data.layout.RawLayout` with per-dataset folders).

    ``check_media``: also require every image / video a record refers to (a missing one
    is a bad record: DataError, or a counted skip under ``Problems("skip")``).
    """
    from vladapter.data.layout import as_layout

    read, media = _functions(name)
    problems = problems or Problems()
    raw = as_layout(raw)  # a root folder, or a RawLayout naming the user's own folders
    splits = read(raw, problems)
    if check_media:
        seen: dict[Path, bool] = {}
        for split, records in splits.items():
            kept = []
            for r in records:
                missing = [p for p in media(raw, r) if not seen.setdefault(p, p.exists())]
                if missing:
                    problems.bad(f"missing media file {missing[0]}", missing[0], f"{split} record {r.uid}",
                                 f"download the {name} images/videos (or regenerate the toy world)")
                    continue
                kept.append(r)
            splits[split] = kept
    return {s: splits.get(s, []) for s in SPLITS}


__all__ = ["DATASETS", "SPLITS", "Problems", "read_dataset"]
