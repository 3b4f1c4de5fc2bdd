"""Generate the toy world: coloured shapes in images and short videos, written in the
published formats of VQAv2, GQA, NLVR2, COCO (Karpathy), TVQA, How2QA, TVC and YC2C, plus
a pre-training split, so the real readers, frame sampler and extractor run on it.

The output is deterministic per --seed (same bytes). `smoke` takes seconds (a few dozen
items per dataset); `default` is sized for the default workflow and takes about a minute
on 2 cores. Besides the published files it writes data/raw/<dataset>/toy_attributes.json
(feature id -> attributes, for the linear probe) and data/raw/toy_stats.json (counts per
split and majority-answer baselines).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from vladapter.errors import ConfigError
from vladapter.utils.io import atomic_path, write_json, write_text

if TYPE_CHECKING:  # imported in build(): `vladapter toyworld --help` stays fast
    from vladapter.data.toyworld import datasets as ds


@dataclass(frozen=True)
class Scale:
    coco: dict  # Karpathy split -> images
    vqa_per_image: int
    gqa: dict
    gqa_per_image: int
    nlvr2: dict  # split -> statements (identifiers)
    pairs_per_sentence: int
    pretrain: dict
    tvqa: dict  # split -> clips (2-4 questions / moments per clip)
    how2qa: dict
    tvc: dict
    yc2c: dict


SCALES = {
    "smoke": Scale(
        coco={"train": 20, "restval": 4, "val": 6, "test": 6}, vqa_per_image=3,
        gqa={"train": 20, "val": 6, "testdev": 6}, gqa_per_image=2,
        nlvr2={"train": 32, "dev": 8, "test1": 8}, pairs_per_sentence=4,
        pretrain={"train": 20, "val": 6},
        tvqa={"train": 6, "val": 2, "test_public": 2}, how2qa={"train": 6, "val": 2, "test_public": 2},
        tvc={"train": 6, "val": 2, "test_public": 2}, yc2c={"train": 5, "val": 2, "test": 2},
    ),
    "default": Scale(
        coco={"train": 1500, "restval": 200, "val": 150, "test": 150}, vqa_per_image=3,
        gqa={"train": 1250, "val": 100, "testdev": 130}, gqa_per_image=3,
        nlvr2={"train": 2000, "dev": 240, "test1": 240}, pairs_per_sentence=4,
        pretrain={"train": 1800, "val": 200},
        tvqa={"train": 200, "val": 25, "test_public": 75}, how2qa={"train": 170, "val": 25, "test_public": 75},
        tvc={"train": 160, "val": 25, "test_public": 65}, yc2c={"train": 130, "val": 20, "test": 50},
    ),
}
DATASETS = ("coco", "vqav2", "gqa", "nlvr2", "tvqa", "how2qa", "tvc", "yc2c", "pretrain")


def build(seed: int, scale: Scale) -> ds.Built:
    """Draw every dataset's annotations and render jobs (cheap; no pixels yet)."""
    from vladapter.data.toyworld import datasets as ds

    parts = [
        ds.build_coco(seed, scale.coco, scale.vqa_per_image),
        ds.build_gqa(seed, scale.gqa, scale.gqa_per_image),
        ds.build_nlvr2(seed, scale.nlvr2, scale.pairs_per_sentence),
        ds.build_pretrain(seed, scale.pretrain, scale.vqa_per_image),
        ds.build_tvqa(seed, scale.tvqa),
        ds.build_how2qa(seed, scale.how2qa),
        ds.build_tvc(seed, scale.tvc),
        ds.build_yc2c(seed, scale.yc2c),
    ]
    out = ds.Built()
    for p in parts:
        out.files.update(p.files)
        out.jobs.extend(p.jobs)
        out.attributes.update(p.attributes)
    return out


def _render(job_and_root) -> str:
    """Render one job to its file, atomically. Runs in the worker pool."""
    from vladapter.data.toyworld import scene, video

    job, root = job_and_root
    path = Path(root) / job[1]
    with atomic_path(path, suffix=path.suffix) as tmp:
        if job[0] == "image":
            img = scene.render(job[2], job[3])
            if path.suffix == ".png":
                img.save(tmp, format="PNG")
            else:  # 4:4:4 keeps the colours of small shapes crisp
                img.save(tmp, format="JPEG", quality=92, subsampling=0)
        else:
            video.write_mp4(tmp, video.frames(job[2]))
    return job[1]


def render_all(jobs: list[tuple], root: Path, workers: int) -> None:
    # videos first: they are the slow jobs, so the pool ends with short ones
    jobs = sorted(jobs, key=lambda j: j[0] != "video")
    items = [(j, str(root)) for j in jobs]
    bar = tqdm(total=len(items), desc="rendering", unit="file", mininterval=1.0)
    if workers <= 1:
        for item in items:
            _render(item)
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render, items, chunksize=16):
                bar.update()
    bar.close()


MEDIA_DIRS = ("coco/images", "gqa/images", "nlvr2/images", "pretrain/images", "tvqa/videos", "how2qa/videos",
              "tvc/videos", "yc2c/videos")


def _clear_previous(root: Path, jobs: list[tuple]) -> None:
    """Remove media of an earlier toy world that this one does not write (a smaller scale
    or another seed), since later stages list the image/video folders. Refuses to write
    over raw data that is not a toy world (real downloads)."""
    used = [d for d in MEDIA_DIRS if (root / d).exists()]
    if not used:
        return
    if not (root / "toy_stats.json").exists():
        raise ConfigError(f"{root} already holds data that is not a toy world ({root / used[0]}); "
                          "generate the toy world into another --out")
    keep = {root / j[1] for j in jobs}
    for d in used:
        for path in (root / d).rglob("*"):
            if path.is_file() and path not in keep:
                path.unlink()


def generate(out: str | os.PathLike, seed: int = 0, scale: str = "default", workers: int | None = None,
             stats: bool = True) -> dict:
    """Write the whole toy world under ``out``; return the stats written to toy_stats.json."""
    if scale not in SCALES:
        raise ConfigError(f"unknown toy world scale {scale!r}; choose from {', '.join(SCALES)}")
    root = Path(out)
    t0 = time.perf_counter()
    built = build(seed, SCALES[scale])
    _clear_previous(root, built.jobs)
    render_all(built.jobs, root, workers or min(2, os.cpu_count() or 1))
    for rel, text in built.files.items():
        write_text(root / rel, text)
    for name, attrs in built.attributes.items():
        write_json(root / name / "toy_attributes.json", attrs, indent=None)
    result = {"seed": seed, "scale": scale, "files": len(built.files) + len(built.jobs)}
    if stats:
        from vladapter.data.baselines import dataset_stats

        result["datasets"] = {name: dataset_stats(name, root) for name in DATASETS}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(root / "toy_stats.json", {k: v for k, v in result.items() if k != "seconds"})
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data/raw", help="root of the raw layout (default: data/raw)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default: 0)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="default",
                        help="smoke: a few dozen items per dataset, seconds; default: the toy workflow's size")
    parser.add_argument("--workers", type=int, default=None,
                        help="rendering processes (default: min(2, CPU count))")


def run(args: argparse.Namespace) -> int:
    result = generate(args.out, seed=args.seed, scale=args.scale, workers=args.workers)
    print(f"toy world ({args.scale}, seed {args.seed}) written to {args.out} in {result['seconds']} s")
    for name, st in result.get("datasets", {}).items():
        counts = " ".join(f"{k}={v}" for k, v in st["counts"].items())
        base = st.get("majority_baseline")
        print(f"  {name:<9} {counts}" + (f"  majority baseline {base:.1f}" if base is not None else ""))
    return 0
