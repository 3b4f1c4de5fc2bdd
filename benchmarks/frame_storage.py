"""Sampled-frame storage: raw uint8 (before) vs JPEG bytes in HDF5 (now), side by side.

Same clips, same sampling, measured in one run: released-style frame folders (3-fps JPEGs
of 640x360 frames with a natural image's 1/f spectrum, see features.synthetic), sampled at
the paper's rate (one frame every 1.5 s) to 224 x 224, then CLIP features extracted from
the frames file (toy CLIP, or ViT-B/32's architecture with random weights).
- before: each sampled frame stored as uint8 (224, 224, 3) (what sample-frames wrote);
- now: each frame stored as its JPEG file (quality 85, the default; 90 for comparison),
  decoded again by the extractor.
Reports stored bytes per frame, sampling frames/s (frame folders -> HDF5) and extraction
frames/s (HDF5 -> features).

    .venv/bin/python benchmarks/frame_storage.py                     # 24 clips of 60 s, toy CLIP
    .venv/bin/python benchmarks/frame_storage.py --arch vit-b32 --clips 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_description, markdown_table  # noqa: E402
from extract import build_model  # noqa: E402

from vladapter.features.backbones import load_backbone  # noqa: E402
from vladapter.features.extract import extract_features  # noqa: E402
from vladapter.features.frames import read_frame_folder, sample_frames  # noqa: E402
from vladapter.features.h5writer import ResumableH5Writer  # noqa: E402
from vladapter.features.synthetic import natural_frame  # noqa: E402


def write_clips(root: Path, n_clips: int, seconds: float, fps: float = 3.0) -> dict[str, Path]:
    """Frame folders <clip>/00001.jpg ... (TVQA's layout), a few distinct frames per clip repeated."""
    clips = {}
    for c in range(n_clips):
        folder = root / f"clip{c:03d}"
        folder.mkdir(parents=True)
        distinct = [Image.fromarray(natural_frame(360, 640, seed=100 * c + k)) for k in range(4)]
        for i in range(int(seconds * fps)):
            distinct[(i // 6) % 4].save(folder / f"{i + 1:05d}.jpg", quality=90)
        clips[folder.name] = folder
    return clips


def sample_raw(clips: dict[str, Path], output: Path, size: int, fps: float) -> int:
    """The storage before: the same sampling, frames kept as uint8 arrays."""
    writer = ResumableH5Writer(output, {"sampler": {"mode": "rate", "value": 1.5}, "size": size})
    n = 0
    for id_, folder in clips.items():
        frames, times = read_frame_folder(folder, fps, "rate", 1.5, size)
        writer.add(id_, frames, attrs={"timestamps": times})
        n += len(frames)
    writer.finish()
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length (default: 60, TVQA's ~60-90 s)")
    parser.add_argument("--arch", default="toy", choices=("toy", "vit-b32"))
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = write_clips(tmp / "frames_hq", args.clips, args.seconds)
        backbone = load_backbone(str(build_model(args.arch, tmp / "clip")))
        stored_size = 224  # what the paper's extractor reads; the toy CLIP resizes it again
        for name, quality in (("before: raw uint8", None), ("now: JPEG q85 (default)", 85), ("JPEG q90", 90)):
            out = tmp / f"{quality}.h5"
            t0 = time.perf_counter()
            if quality is None:
                n_frames = sample_raw(clips, out, stored_size, 3.0)
            else:
                n_frames = sample_frames(clips, out, "rate", 1.5, size=stored_size, workers=1, fps=3.0,
                                         quality=quality, progress=False).frames
            sampling = time.perf_counter() - t0
            t0 = time.perf_counter()
            extract_features(backbone, tmp / f"{quality}.feat.h5", frames=out, batch_size=args.batch_size,
                             workers=1, progress=False)
            extraction = time.perf_counter() - t0
            rows.append({"storage": name, "frames": n_frames, "bytes/frame": round(out.stat().st_size / n_frames),
                         "sampling frames/s": round(n_frames / sampling, 1),
                         "extraction frames/s": round(n_frames / extraction, 1)})
    raw = rows[0]["bytes/frame"]
    for row in rows:
        row["size vs raw"] = round(row["bytes/frame"] / raw, 3)
    print(json.dumps({"machine": machine_description(), "args": vars(args)}))
    print(markdown_table(list(rows[0]), [list(r.values()) for r in rows]))


if __name__ == "__main__":
    main()
