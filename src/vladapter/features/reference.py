"""The reference's released CLIP feature folders as a feature source (`vladapter import-features`,
which dispatches here for a folder of ``<img_id>.h5``; VALUE's video features: ``features.released``).

VL-Adapter's reference code reads CLIP RN101 grid features from one HDF5 file per image::

    <dataset>/clip_features/data_clip_RN101_att/<img_id>.h5     (COCO, GQA, VG, nlvr)
        <img_id>/features    float16 (49, 2048): the 7x7 grid of the last conv map

Users who hold that download need not extract again: this converts a folder (or several, e.g.
COCO's and VG's for the pre-training source) into the project's one feature HDF5 per source
(``data/features/<source>.<backbone>.h5``, kind ``grid``), read by the FeatureStore like an
extracted one. Every file is checked: one group named after the file's id holding ``features``
of one square grid shape and width for the whole source, matching the backbone's grid when the
backbone is known (CLIP RN50/RN101: 7x7x2048), finite values. The root attributes record where
the features came from (``released``: format, folders, number of files). The user's folders
are only read. Resumable like extraction (shards of completed ids beside the output).
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from vladapter.errors import ConfigError, DataError
from vladapter.features.h5writer import ResumableH5Writer

REFERENCE_BACKBONE = "open_clip:RN101@openai"
FORMAT = "VL-Adapter clip_features/data_clip_RN101_att (<img_id>.h5: <img_id>/features)"
# grids of the backbones whose released features exist: open_clip's name -> (grid side, width)
KNOWN_GRIDS = {"RN50": (7, 2048), "RN101": (7, 2048)}


def list_files(folders: list[Path]) -> dict[str, Path]:
    """Image id -> file for every ``<id>.h5`` in the folders (ids unique across them)."""
    files: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise DataError("reference feature folder not found", path=folder,
                            fix="name the data_clip_RN101_att folder of the reference's download")
        for path in sorted(folder.glob("*.h5")):
            if path.stem in files:
                raise DataError(f"two feature files share the id {path.stem!r} ({files[path.stem]})", path=path,
                                fix="give each source folders whose image ids do not overlap")
            files[path.stem] = path
    if not files:
        raise DataError("no <img_id>.h5 files in the reference feature folder(s)", path=", ".join(map(str, folders)),
                        fix="name the data_clip_RN101_att folder itself")
    return files


def read_one(id_: str, path: Path) -> np.ndarray:
    """The (n, dim) grid of one reference file; DataError naming the file when it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if id_ not in f or "features" not in f[id_]:
                raise DataError(f"no dataset {id_}/features (groups: {', '.join(list(f)[:3])})", path=path,
                                fix="each file must hold <img_id>/features as the reference writes it")
            grid = f[id_]["features"][()]
    except OSError as e:
        raise DataError(f"cannot read the feature file ({str(e).split(' (')[0]})", path=path,
                        fix="download that file again") from None
    if grid.ndim != 2:
        raise DataError(f"features of shape {grid.shape}, expected (grid tokens, width)", path=path)
    if not np.isfinite(grid).all():
        raise DataError("features hold NaN or infinite values", path=path, fix="download that file again")
    return grid


def is_reference_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds the reference's ``<img_id>.h5`` files (rather than VALUE's ``.npz``)."""
    return Path(folder).is_dir() and next(Path(folder).glob("*.h5"), None) is not None


def import_reference(folders: list[str | Path], output: str | Path, backbone: str = REFERENCE_BACKBONE,
                     flush_every: int = 512, overwrite: bool = False, progress: bool = True) -> int:
    """Convert the reference feature folders into ``output``; returns the number of ids written."""
    from vladapter.utils.names import name_key

    folders = [Path(f).resolve() for f in folders]
    files = list_files(folders)
    first_id = next(iter(files))
    n, dim = read_one(first_id, files[first_id]).shape
    side = math.isqrt(n)
    if side * side != n:
        raise DataError(f"{n} grid tokens is not a square grid", path=files[first_id])
    known = KNOWN_GRIDS.get(name_key(backbone))
    if known is not None and known != (side, dim):
        raise ConfigError(f"{files[first_id]} holds {side}x{side}x{dim} grids, but backbone {backbone} gives "
                          f"{known[0]}x{known[0]}x{known[1]}: set backbone.image to the backbone the features "
                          "were extracted with")
    attrs = {"backbone": name_key(backbone), "kind": "grid", "grid": [side, side], "dim": int(dim), "pooled_dim": 0,
             "config": {"source": backbone}, "preprocessing": {},
             "released": {"format": FORMAT, "folders": [str(f) for f in folders], "files": len(files)}}
    writer = ResumableH5Writer(output, attrs, flush_every=flush_every, overwrite=overwrite)
    todo = [i for i in files if i not in writer.done]
    try:
        for id_ in tqdm(todo, desc=f"import {Path(output).name}", unit="image", disable=not progress):
            grid = read_one(id_, files[id_])
            if grid.shape != (n, dim):
                raise DataError(f"features of shape {grid.shape}, the other files' are {(n, dim)}", path=files[id_],
                                fix="a source's files must come from one backbone")
            writer.add(id_, grid.astype(np.float16))
    except BaseException:
        writer.flush()  # keep completed ids for the rerun
        raise
    writer.finish()
    return len(todo)
