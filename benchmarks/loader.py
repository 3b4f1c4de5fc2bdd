"""Does data loading keep up with training? Loader throughput / training consumption.

Builds a synthetic world of the paper's image-text sizes (CLIP RN101 grids: 7x7 x 2048
float16 per image in the documented feature-HDF5 layout, pooled to 36 tokens; VQA and
caption records), then drives the trainer's own pipeline (`TaskSampler` ->
`BatchBuilder` -> `torch.utils.data.DataLoader(batch_size=None, sampler=specs)`, as in
`vladapter.train.loop.fit`) for each --workers setting, and reports batches/s after the
first batch (worker start-up is reported apart). Training consumption is 1 / step time
of the fastest preset in a train_step.py result (--train-step-json), or --step-s.

    .venv/bin/python benchmarks/loader.py
    .venv/bin/python benchmarks/loader.py --workers 0 2 --batches 100 --step-s 2.0
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import REPO, check, machine_description, markdown_table  # noqa: E402

TARGET = 5.0  # loader must deliver >= 5x the batches training consumes
WORDS = ("what colour is the small red cube left of a large blue sphere how many objects are there "
         "in this picture a photo of two green cylinders next to one yellow cone on the table").split()


def make_world(root: Path, n_images: int, n_records: int, grid: int, dim: int, seed: int = 0):
    """Feature HDF5 + prepared vqa/caption records + a word-level tokenizer under ``root``."""
    import numpy as np

    from vladapter.data.records import Record
    from vladapter.features.h5writer import ResumableH5Writer
    from vladapter.models.tokenizer import build_tokenizer
    from vladapter.utils.io import write_jsonl

    rng = np.random.default_rng(seed)
    features = root / "features"
    writer = ResumableH5Writer(features / "coco.bench.h5", {
        "backbone": "bench", "kind": "grid", "grid": [grid, grid], "dim": dim,
        "config": {"synthetic": True}, "preprocessing": {}}, flush_every=128)
    ids = [f"COCO_train2014_{i:012d}" for i in range(n_images)]
    for id_ in ids:
        grid_feats = rng.standard_normal((grid * grid, dim), dtype=np.float32).astype(np.float16)
        writer.add(id_, grid_feats, extra={"pooled": grid_feats.max(0)})
    writer.finish()

    def sentence(n):
        return " ".join(rng.choice(WORDS, n))

    for dataset, task in (("vqav2", "vqa"), ("coco", "caption")):
        rows = []
        for i in range(n_records):
            image = ids[i % n_images]
            if task == "vqa":
                rec = Record(uid=f"q{i}", task=task, split="train", source="coco", images=[image],
                             text=sentence(12) + "?", targets={sentence(1): 1.0, sentence(2): 0.3})
            else:
                cap = sentence(16)
                rec = Record(uid=f"c{i}", task=task, split="train", source="coco", images=[image],
                             targets={cap: 1.0}, references=[cap])
            rows.append(rec.to_dict())
        write_jsonl(root / "prepared" / dataset / "train.jsonl", rows)
    return build_tokenizer(WORDS)


def loader_throughput(root: Path, tokenizer, workers: int, batch_size: int, n_batches: int,
                      n_tokens: int, pin_memory: bool) -> dict:
    """Batches/s of the trainer's DataLoader over ``n_batches`` (after the first one)."""
    import torch

    from vladapter.core.inputs import Features, load_task_data

    from vladapter.train.data import BatchBuilder
    from vladapter.train.loop import task_batch_sizes
    from vladapter.train.sampler import TaskSampler

    data = load_task_data(root / "prepared", ["vqa", "caption"], "train")
    sampler = TaskSampler({t: len(d.records) for t, d in data.items()}, task_batch_sizes(data, batch_size))
    features = Features(root / "features", "bench", n_image_tokens=n_tokens, n_video_frames=8)
    builder = BatchBuilder(data, tokenizer, features, prefix=True)
    specs = list(sampler.iterate(0, n_batches + 1))
    loader = torch.utils.data.DataLoader(builder, batch_size=None, sampler=specs, num_workers=workers,
                                         pin_memory=pin_memory)
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t1 = time.perf_counter()
    n = 0
    for batch in it:
        n += 1
    t2 = time.perf_counter()
    return {"workers": workers, "pin_memory": pin_memory, "first_batch_s": t1 - t0,
            "batches_per_s": n / (t2 - t1), "batch_rows": int(first["input_ids"].shape[0]),
            "vis_shape": list(first["vis_feats"].shape)}


def training_step_s(path: Path | None, step_s: float | None) -> tuple[float, str]:
    """Seconds per training step to compare with: given, or the fastest preset in a
    train_step.py result (the most demanding consumer)."""
    if step_s:
        return step_s, "--step-s"
    if path and path.exists():
        results = json.loads(path.read_text())["results"]
        fastest = min(results, key=lambda r: r["step_s"])
        return fastest["step_s"], f"{fastest['lm']} {fastest['preset']} ({path.name})"
    raise SystemExit(f"no training step time: run benchmarks/train_step.py first ({path}) or pass --step-s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="DataLoader worker counts to measure (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="base batch size (default: %(default)s)")
    parser.add_argument("--batches", type=int, default=60, help="batches timed per setting (default: %(default)s)")
    parser.add_argument("--images", type=int, default=256, help="synthetic images (default: %(default)s)")
    parser.add_argument("--records", type=int, default=1024, help="records per task (default: %(default)s)")
    parser.add_argument("--grid", type=int, default=7, help="feature grid side (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=2048, help="feature size (default: %(default)s)")
    parser.add_argument("--n-tokens", type=int, default=36, help="visual tokens per image (default: %(default)s)")
    parser.add_argument("--pin-memory", choices=["auto", "yes", "no"], default="auto",
                        help="pinned host memory (auto: when CUDA is available, as the trainer does)")
    parser.add_argument("--train-step-json", type=Path, default=REPO / "benchmarks/out/train_step.json",
                        help="train_step.py result to take the step time from (default: %(default)s)")
    parser.add_argument("--step-s", type=float, default=None, help="training seconds per step (overrides the JSON)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/out/loader.json", help="(default: %(default)s)")
    parser.add_argument("--markdown", type=Path, default=REPO / "benchmarks/out/loader.md", help="(default: %(default)s)")
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from vladapter.utils.io import write_json, write_text

    step_s, step_source = training_step_s(args.train_step_json, args.step_s)
    pin = torch.cuda.is_available() if args.pin_memory == "auto" else args.pin_memory == "yes"
    with tempfile.TemporaryDirectory(prefix="vladapter-loader-") as tmp:
        root = Path(tmp)
        tokenizer = make_world(root, args.images, args.records, args.grid, args.dim)
        results = [loader_throughput(root, tokenizer, w, args.batch_size, args.batches, args.n_tokens, pin)
                   for w in tqdm(args.workers, desc="loader benchmark", unit="setting")]
    for r in results:
        r["ratio_to_training"] = r["batches_per_s"] * step_s
    cmd = "python benchmarks/loader.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = [[r["workers"], r["pin_memory"], r["first_batch_s"], r["batches_per_s"], 1 / step_s,
             r["ratio_to_training"], check(r["ratio_to_training"] >= TARGET)] for r in results]
    md = (f"Command: `{cmd.strip()}`\n\nBase batch {args.batch_size} (VQA + caption, task-scaled), "
          f"{args.images} images of {args.grid}x{args.grid}x{args.dim} float16 pooled to {args.n_tokens} "
          f"tokens; training consumption: {step_s:.3f} s/step ({step_source}).\n\n"
          + markdown_table(["workers", "pinned", "first batch s", "loader batches/s", "training steps/s",
                            "loader / training", f">= {TARGET:g}x"], rows) + "\n")
    write_json(args.out, {"machine": machine_description(), "step_s": step_s, "step_source": step_source,
                          "results": results})
    write_text(args.markdown, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
