"""Released features into the project's feature HDF5 (`vladapter import-features`): VALUE's CLIP
ViT-B/32 frame vectors here; the reference's image grid folders in ``features.reference``.

VALUE's DataRelease (download_features/download_{tv,how2,yc2}.sh) unpacks
``vis_features/{tv,how2,yc2}/clip-vit/<video id>.npz``: one file per video, array
``features`` float16 ``(T, 512)``, the CLIP ViT-B/32 image embedding of one frame every
1.5 s (HERO_Video_Feature_Extractor's clip/extract.py: ffmpeg's fps filter at 1/1.5 fps,
224 px centre crops), the features the paper's video results use. TVC's videos are TVQA's
(``tv``). The converter writes what `vladapter extract-features` writes for sampled frames:
one float16 ``(T, D)`` dataset per video id with the ``timestamps`` attribute its sampling
rate implies (frame k at k x 1.5 s), root attributes ``kind`` = frames, ``dim``,
``backbone``, ``config`` (where it came from): the FeatureStore's spans, padding and pooling
read it unchanged. Only the videos of the prepared records are converted (prepare has
already listed and dropped the missing ones, in videos_report.json). The folder is only read;
``.npz`` files are opened without pickle. Resumable and atomic like every feature file.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vladapter.data.videos import VideoFolder, read_feature_file
from vladapter.errors import DataError

VALUE_INTERVAL_S = 1.5   # VALUE: "1 feature every 1.5 seconds" (DataRelease README)
VALUE_BACKBONE = "ViT-B/32"  # OpenAI CLIP, the `clip` package's (= openai/clip-vit-base-patch32)


@dataclass
class ImportReport:
    written: int = 0
    kept: int = 0
    total: int = 0
    frames: int = 0


def timestamps(n: int, interval: float = VALUE_INTERVAL_S) -> np.ndarray:
    """Seconds of the n released vectors: frame k at k x interval (ffmpeg's fps filter)."""
    return (np.arange(n, dtype=np.float64) * interval).astype(np.float32)


def import_features(folder: str | Path, ids: list[str], output: str | Path, interval: float = VALUE_INTERVAL_S,
                    backbone: str = VALUE_BACKBONE, flush_every: int = 512, overwrite: bool = False,
                    progress: bool = True) -> ImportReport:
    """Convert the released ``<id>.npz`` files of ``ids`` under ``folder`` into the feature
    HDF5 ``output``. A missing or unreadable file, a dimension unlike the others' or a NaN is
    a DataError naming the file (prepare's report lists the missing videos beforehand)."""
    from tqdm import tqdm

    from vladapter.features.h5writer import ResumableH5Writer

    if interval <= 0:
        raise DataError(f"the released features' interval must be positive, got {interval}",
                        fix="VALUE's is 1.5 s (--interval 1.5)")
    found = VideoFolder(Path(folder), features=True).find(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataError(f"{len(missing)} videos of the prepared records have no feature file (first: {missing[0]})",
                        path=folder, fix="prepare the records against this folder (vladapter prepare "
                                         "--video-features), which lists and drops the records of missing videos")
    dim = int(_read(found[ids[0]]).shape[1]) if ids else 0
    attrs = {"kind": "frames", "dim": dim, "backbone": backbone,
             "config": {"released": "VALUE vis_features clip-vit", "folder": str(folder), "interval_s": interval},
             "preprocessing": {"frames": f"one every {interval} s (ffmpeg fps filter)", "crop": 224}}
    writer = ResumableH5Writer(output, attrs, flush_every=flush_every, overwrite=overwrite)
    todo = [i for i in ids if i not in writer.done]
    report = ImportReport(kept=len(ids) - len(todo), total=len(ids))
    try:
        for id_ in tqdm(todo, desc=f"features {Path(output).name}", unit="video", disable=not progress):
            path = found[id_]
            features = _read(path)
            if features.shape[1] != dim:
                raise DataError(f"{features.shape[1]}-d features, the others are {dim}-d", path=path,
                                fix="every file of a source must come from one backbone")
            if not np.isfinite(features).all():
                raise DataError("the features hold NaN or infinite values", path=path,
                                fix="download the file again")
            writer.add(id_, features.astype(np.float16), attrs={"timestamps": timestamps(len(features), interval)})
            report.written += 1
            report.frames += len(features)
    except BaseException:
        writer.flush()  # keep the converted ids for the rerun
        raise
    writer.finish()
    return report


def _read(path: Path) -> np.ndarray:
    try:
        return read_feature_file(path)
    except ValueError as e:
        raise DataError(str(e), path=path, fix="download the file again (prepare lists unreadable ones)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="feature source (tvqa, how2qa, yc2c; coco, gqa, nlvr2, "
                        "pretrain): the output's name")
    parser.add_argument("--folder", required=True, type=Path, nargs="+",
                        help="the released features (only read): VALUE's vis_features/<tv|how2|yc2>/clip-vit "
                             "(<id>.npz, searched recursively), or the reference's <dataset>/clip_features/"
                             "data_clip_RN101_att folder(s) (<img_id>.h5; several make one source)")
    parser.add_argument("--records", type=Path, nargs="+",
                        help="VALUE's video features: prepared dataset folders (data/prepared/<dataset>) whose videos "
                             "are converted (several: datasets sharing the videos, TVQA and TVC)")
    parser.add_argument("--backbone", help="the backbone the features come from (default: VALUE's ViT-B/32, the "
                        "reference's open_clip:RN101@openai)")
    parser.add_argument("--output", type=Path,
                        help="feature HDF5 (default: data/features/<source>.<backbone name>.h5)")
    parser.add_argument("--interval", type=float, default=VALUE_INTERVAL_S,
                        help=f"VALUE: seconds between the released vectors (default: {VALUE_INTERVAL_S})")
    parser.add_argument("--flush-every", type=int, default=512,
                        help="ids per resumable shard: the most work an interruption loses (default: 512)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output / unfinished run")


def run(args: argparse.Namespace) -> int:
    from vladapter.errors import ConfigError
    from vladapter.features.reference import REFERENCE_BACKBONE, import_reference, is_reference_folder
    from vladapter.utils.names import name_key

    if is_reference_folder(args.folder[0]):  # the reference's image grids: <img_id>.h5 files
        backbone = args.backbone or REFERENCE_BACKBONE
        output = args.output or Path("data/features") / f"{args.source}.{name_key(backbone)}.h5"
        written = import_reference(args.folder, output, backbone, flush_every=args.flush_every,
                                   overwrite=args.overwrite)
        print(f"{output}: {written} images imported from {', '.join(map(str, args.folder))}")
        return 0
    from vladapter.features.frames import record_segments

    if not args.records or len(args.folder) != 1:
        raise ConfigError("VALUE's video features: give one --folder and the prepared --records whose videos to "
                          "convert (a folder of the reference's <img_id>.h5 image features needs neither)")
    backbone = args.backbone or VALUE_BACKBONE
    output = args.output or Path("data/features") / f"{args.source}.{name_key(backbone)}.h5"
    ids = list(record_segments(args.records))
    report = import_features(args.folder[0], ids, output, interval=args.interval, backbone=backbone,
                             flush_every=args.flush_every, overwrite=args.overwrite)
    print(f"{output}: {report.written} videos converted ({report.frames} vectors), {report.kept} kept from "
          f"before, of {report.total} ({args.folder[0]})")
    return 0
