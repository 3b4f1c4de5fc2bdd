"""Feature-extraction throughput vs the bare model forward (is the pipeline compute-bound?).

Same images, same model, same batch size, measured side by side in one run:
- bare forward: `backbone.encode` on ready-made, already-normalised pixel batches (the
  compute floor: what the model alone costs);
- pipeline: `extract_features` from the image files on disk (JPEG decode, CLIP resize +
  crop in DataLoader workers, normalisation, forward, float16 HDF5 shards, final merge).
ratio = pipeline images/s / bare images/s; 1.0 means all overhead is hidden behind compute.
The backbone is built from a config with random weights (nothing is downloaded):
`toy` = the toy CLIP (64 px, 8x8 grid), `vit-b32` = CLIP ViT-B/32's vision tower (224 px).

    .venv/bin/python benchmarks/extract.py                       # toy CLIP on 64x64 images
    .venv/bin/python benchmarks/extract.py --arch vit-b32 --n 128 --image-size 480x360
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_description, markdown_table  # noqa: E402

from vladapter.features.backbones import load_backbone  # noqa: E402
from vladapter.features.extract import extract_features, list_images  # noqa: E402
from vladapter.features.synthetic import write_image  # noqa: E402


def build_model(arch: str, folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel

    from vladapter.features.toy_clip import tiny_clip_config

    if arch == "toy":
        config = tiny_clip_config(100)
    elif arch == "vit-b32":  # openai/clip-vit-base-patch32's architecture
        config = CLIPConfig(text_config={"num_hidden_layers": 1},
                            vision_config=dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                                               num_hidden_layers=12, num_attention_heads=12, projection_dim=512),
                            projection_dim=512)
    else:
        raise SystemExit(f"unknown --arch {arch}")
    CLIPModel(config).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="toy", choices=("toy", "vit-b32"))
    parser.add_argument("--n", type=int, default=1024, help="images (default: 1024)")
    parser.add_argument("--image-size", default="64x64", help="JPEG size WxH on disk (default: 64x64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the pipeline (default: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model (default: 1)")
    parser.add_argument("--out", type=Path, help="write the raw results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        w, h = map(int, args.image_size.split("x"))
        for i in range(args.n):
            write_image(tmp / "images" / f"im{i:05d}.jpg", width=w, height=h, seed=i)
        backbone = load_backbone(str(build_model(args.arch, tmp / "model")))
        size = backbone.preprocess.size
        batches = [torch.randn(min(args.batch_size, args.n - s), 3, size, size) for s in range(0, args.n, args.batch_size)]

        def bare() -> float:
            start = time.perf_counter()
            for pixels in batches:
                backbone.encode(pixels)
            return time.perf_counter() - start

        def pipeline() -> float:
            start = time.perf_counter()
            extract_features(backbone, tmp / "out.h5", images=list_images(tmp / "images"), batch_size=args.batch_size,
                             workers=args.workers, overwrite=True, progress=False)
            return time.perf_counter() - start

        bare()  # warm-up
        # interleaved repeats: the machine's load drifts, a ratio of neighbours is fairer
        times = {"bare forward": [], "pipeline": []}
        for _ in range(3):
            times["bare forward"].append(bare())
            times["pipeline"].append(pipeline())
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows = [[k, args.n / med[k], med["bare forward"] / med[k]] for k in times]
    print(f"{args.arch} backbone ({size} px, grid {backbone.grid}), {args.n} JPEGs of {args.image_size}, "
          f"batch {args.batch_size}, {args.workers} decode worker(s), {args.threads} torch thread(s)\n")
    print(markdown_table(["", "images/s", "ratio to bare forward"], rows))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine_description(), "args": vars(args) | {"out": str(args.out)},
                                        "times_s": times}, indent=2))


if __name__ == "__main__":
    main()
