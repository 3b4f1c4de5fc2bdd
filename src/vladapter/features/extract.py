"""Extract frozen CLIP features into HDF5 (data/features/<source>.<backbone>.h5).

Images (a folder, searched recursively for .jpg/.jpeg/.png; id = file stem): one float16
dataset per id with the grid/patch tokens (n_patches, dim), and group pooled/<id> with the
pooled vector. Sampled frames (a frames HDF5 from `vladapter sample-frames`): one float16
(T, pooled_dim) dataset per video id, timestamps copied. Images are decoded and resized in
DataLoader worker processes, which hand over uint8 tensors (on GPU pinned, copied
asynchronously: a quarter of the bytes of float pixels); normalisation runs on the device,
and the model batched under torch.inference_mode (autocast on GPU: bf16 where native,
fp16 on older GPUs). Resumable: ids done by an earlier, interrupted run are not
recomputed, and the output file appears only when complete. The file's signature records
the device type and precision, so an interrupted run is not resumed on another (a GPU's
bf16 features merged with a CPU's fp32 ones).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import h5py
import numpy as np
from tqdm import tqdm

from vladapter.errors import ConfigError, DataError
from vladapter.features.frames import decode_frames
from vladapter.features.h5writer import ResumableH5Writer, root_ids
from vladapter.features.preprocess import ClipPreprocess

# torch and the backbones are imported inside the functions that use them, so that
# `vladapter extract-features --help` answers without importing torch
if TYPE_CHECKING:
    import torch

    from vladapter.features.backbones import VisionBackbone

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image id (file stem) -> path for every image under ``folder`` (recursively)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("images folder not found", path=folder,
                        fix="generate or download the dataset first (vladapter toyworld / download)")
    images: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in images:
                raise DataError(f"two images share the id {path.stem!r} ({images[path.stem]})", path=path,
                                fix="image ids are file stems and must be unique within a source")
            images[path.stem] = path
    if not images:
        raise DataError("no images in folder", path=folder, fix=f"expected {', '.join(IMAGE_SUFFIXES)} files")
    return images


class ImageCrops:
    """Item i -> (i, uint8 tensor (1, S, S, 3) crop, None) or (i, None, error message) for an
    unreadable image. A map-style dataset for torch's DataLoader (``__getitem__`` and ``__len__``)."""

    def __init__(self, paths: list[Path], preprocess: ClipPreprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as image:
                return i, torch.from_numpy(self.preprocess.pixels(image)[None]), None
        except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for corrupt/truncated files
            return i, None, f"cannot read image ({e})"


class FrameCrops:
    """Item i -> (i, uint8 tensor (T, S, S, 3) crops of video ids[i], timestamps). The HDF5
    file is opened lazily in each worker process (h5py handles must not cross a fork)."""

    def __init__(self, frames_path: Path, ids: list[str], preprocess: ClipPreprocess):
        self.frames_path, self.ids, self.preprocess = frames_path, ids, preprocess
        self._file = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        if self._file is None:
            self._file = h5py.File(self.frames_path, "r")
        ds = self._file[self.ids[i]]
        if "offsets" in ds.attrs:  # JPEG-compressed frames (sample-frames)
            frames = decode_frames(ds[()], ds.attrs["offsets"])
        else:  # raw uint8 (T, H, W, 3)
            frames = ds[()]
        import torch

        if frames.shape[1:3] != (self.preprocess.size, self.preprocess.size):
            frames = np.stack([self.preprocess.pixels(f) for f in frames])
        return i, torch.from_numpy(np.ascontiguousarray(frames)), ds.attrs["timestamps"]


@dataclass
class ExtractReport:
    written: int = 0
    kept: int = 0
    total: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _as_is(item):
    """Keep worker items as they are (one item per id; batched in the main process)."""
    return item


def _batches(loader, batch_size: int) -> Iterator[list[tuple]]:
    """Group loader items into lists holding about ``batch_size`` frames/images."""
    batch, n = [], 0
    for item in loader:
        batch.append(item)
        n += 0 if item[1] is None else len(item[1])
        if n >= batch_size:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def _encode(backbone: VisionBackbone, crops: list[torch.Tensor], device: torch.device, dtype: torch.dtype | None):
    """uint8 crops (pinned on GPU) -> float16 numpy (grid, pooled): copied as uint8,
    normalised on ``device``, encoded under autocast ``dtype`` (None: float32)."""
    import torch

    pixels = backbone.preprocess.normalise(torch.cat([c.to(device, non_blocking=True) for c in crops]))
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with autocast:
        grid, pooled = backbone.encode(pixels)
    return grid.float().cpu().numpy().astype(np.float16), pooled.float().cpu().numpy().astype(np.float16)


def extract_features(backbone: VisionBackbone, output: str | Path, images: dict[str, Path] | None = None,
                     frames: str | Path | None = None, batch_size: int = 64, workers: int = 2,
                     device: str = "cpu", on_error: str = "raise", flush_every: int = 512,
                     overwrite: bool = False, progress: bool = True) -> ExtractReport:
    """Extract ``images`` (id -> path) or the videos of the frames HDF5 ``frames`` into ``output``.

    Ids already in ``output`` or in the shards of an interrupted run are skipped.
    on_error "raise": an unreadable image (or NaN/inf features) raises DataError naming it;
    "skip": listed in the report.
    """
    import torch
    from torch.utils.data import DataLoader

    from vladapter.utils.digest import state_digest
    from vladapter.utils.precision import auto_dtype, precision_name

    if (images is None) == (frames is None):
        raise ValueError("give exactly one of images= or frames=")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    device = torch.device(device)
    dtype = auto_dtype(device)
    # the weights' content hash too: a backbone retrained under the same name and config
    # must not have its stale features merged with new ones; and where and in what
    # precision they are computed (bf16 on a GPU differs from fp32 on the CPU)
    attrs = {"backbone": backbone.name, "config": backbone.config, "preprocessing": backbone.preprocess.to_dict(),
             "weights_sha256": state_digest(backbone.module), "device": device.type,
             "precision": precision_name(dtype)}
    if images is not None:
        attrs.update(kind="grid", grid=list(backbone.grid), dim=backbone.dim, pooled_dim=backbone.pooled_dim)
        all_ids = list(images)
    else:
        frames = Path(frames)
        if not frames.exists():
            raise DataError("frames file not found", path=frames, fix="run vladapter sample-frames first")
        with h5py.File(frames, "r") as f:
            all_ids = root_ids(f)
            attrs["frames"] = {"sampler": json.loads(f.attrs["sampler"]), "size": int(f.attrs["size"]),
                               **({"fps": float(f.attrs["fps"])} if "fps" in f.attrs else {})}
        attrs.update(kind="frames", dim=backbone.pooled_dim)
    writer = ResumableH5Writer(output, attrs, flush_every=flush_every, overwrite=overwrite)
    todo = [i for i in all_ids if i not in writer.done]
    report = ExtractReport(kept=len(all_ids) - len(todo), total=len(all_ids))
    dataset = (ImageCrops([images[i] for i in todo], backbone.preprocess) if images is not None
               else FrameCrops(frames, todo, backbone.preprocess))
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    bar = tqdm(total=len(todo), desc=f"features {Path(output).name}", unit="video" if frames else "image",
               disable=not progress)
    try:
        for batch in _batches(loader, batch_size):
            good = []
            for i, crops, extra in batch:
                if crops is None:
                    if on_error == "raise":
                        raise DataError(extra, path=images[todo[i]], fix="replace the file, or pass --on-error skip")
                    report.skipped.append((str(images[todo[i]]), extra))
                else:
                    good.append((i, crops, extra))
            if good:
                grid, pooled = _encode(backbone, [c for _, c, _ in good], device, dtype)
                start = 0
                for i, crops, extra in good:
                    n = len(crops)
                    item = (grid[start], pooled[start]) if images is not None else (pooled[start:start + n],)
                    start += n
                    if not all(np.isfinite(a).all() for a in item):
                        # a NaN/inf feature would be scored silently as a wrong answer later
                        where = images[todo[i]] if images is not None else frames
                        message = "the backbone gave NaN or infinite features"
                        if on_error == "raise":
                            raise DataError(message, path=where, record=todo[i],
                                            fix="check the backbone checkpoint (and the image), or pass --on-error skip")
                        report.skipped.append((f"{where} ({todo[i]})", message))
                        continue
                    if images is not None:
                        writer.add(todo[i], item[0], extra={"pooled": item[1]})
                    else:
                        writer.add(todo[i], item[0], attrs={"timestamps": extra})
                    report.written += 1
            bar.update(len(batch))
    except BaseException:
        writer.flush()  # keep completed ids for the rerun
        raise
    finally:
        bar.close()
    writer.finish()
    return report


def default_input(source: str) -> Path:
    """data/frames/<source>.h5 for a sampled video source, else data/raw/<source>/images."""
    frames = Path("data/frames") / f"{source}.h5"
    return frames if frames.exists() else Path("data/raw") / source / "images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                        help="feature source: an image dataset (coco, gqa, nlvr2, pretrain) or a video dataset")
    parser.add_argument("--input", type=Path,
                        help="images folder or frames HDF5 (default: data/frames/<source>.h5 if it exists, "
                             "else data/raw/<source>/images)")
    parser.add_argument("--backbone", default="models/toyclip-resnet",
                        help="HF CLIP checkpoint or folder (openai/clip-vit-base-patch32, models/toyclip-resnet), or "
                             "open_clip:RN101[@weights file, folder or hub id] (default: models/toyclip-resnet)")
    parser.add_argument("--output", type=Path,
                        help="feature HDF5 (default: data/features/<source>.<backbone name>.h5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images/frames per forward pass (default: 64)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding images (default: 2)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="unreadable image: stop with an error naming it (default) or skip and report it")
    parser.add_argument("--flush-every", type=int, default=512,
                        help="ids per resumable shard: the most work an interruption loses (default: 512)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing output / unfinished run")


def run(args: argparse.Namespace) -> int:
    import torch

    from vladapter.features.backbones import load_backbone

    from vladapter.utils.arithmetic import threads

    if threads(args.threads):
        torch.set_num_threads(threads(args.threads))  # the pinned count unless cpu_arithmetic is native
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    source = args.input or default_input(args.source)
    backbone = load_backbone(args.backbone, device)
    output = args.output or Path("data/features") / f"{args.source}.{backbone.name}.h5"
    if source.suffix == ".h5":
        inputs = {"frames": source}
    else:
        inputs = {"images": list_images(source)}
    report = extract_features(backbone, output, batch_size=args.batch_size, workers=args.workers, device=device,
                              on_error=args.on_error, flush_every=args.flush_every, overwrite=args.overwrite,
                              **inputs)
    print(f"{output}: {report.written} extracted, {report.kept} kept from before, "
          f"{len(report.skipped)} skipped of {report.total}")
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    return 0
