"""Read one dataset's published files (real download or toy world) into prepared records:
<out>/<dataset>/{train,val,test}.jsonl (one Record.to_dict() per line) and summary.json
(counts per split, skipped records by reason, the first few problems).

Split names are normalised (train / val / test, test = the paper's test split: Karpathy
test, GQA testdev, NLVR2 test1, the VALUE test split). A malformed record or a missing
file stops with an error naming the file, the record and the fix; with --on-error skip
bad records are left out, counted and reported instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from vladapter.data.readers import DATASETS, SPLITS, Problems, read_dataset
from vladapter.utils.io import write_json, write_jsonl


def prepare(dataset: str, raw="data/raw", out: str | Path = "data/prepared",
            on_error: str = "raise", check_media: bool = True) -> dict:
    """Write the prepared splits and summary of ``dataset``; return the summary. ``raw`` is
    the raw root, or a RawLayout naming the user's own folders per dataset."""
    problems = Problems(on_error)
    splits = read_dataset(dataset, raw, problems, check_media=check_media)
    target = Path(out) / dataset
    for split in tqdm(SPLITS, desc=f"prepare {dataset}", unit="split", leave=False):
        write_jsonl(target / f"{split}.jsonl", (r.to_dict() for r in splits[split]))
    summary = {
        "dataset": dataset, "raw": str(raw), "on_error": on_error, "media_checked": check_media,
        "counts": {s: len(splits[s]) for s in SPLITS},
        "skipped": problems.total, "skipped_by_reason": dict(problems.skipped), "problems": problems.examples,
    }
    write_json(target / "summary.json", summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset to prepare")
    parser.add_argument("--raw", default="data/raw", help="root of the raw layout (default: data/raw)")
    parser.add_argument("--path", action="append", metavar="DATASET=FOLDER",
                        help="a dataset's raw folder elsewhere than <raw>/<dataset> (repeatable): read where it "
                             "lies, never modified")
    parser.add_argument("--out", default="data/prepared", help="output root (default: data/prepared)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="bad record or missing media: stop with an error (default) or skip and count it")
    parser.add_argument("--no-media-check", dest="check_media", action="store_false",
                        help="do not check that every referenced image/video file exists")


def run(args: argparse.Namespace) -> int:
    from vladapter.data.layout import RawLayout, parse_paths

    raw = RawLayout(args.raw, parse_paths(args.path))
    s = prepare(args.dataset, raw, args.out, args.on_error, args.check_media)
    counts = " ".join(f"{k}={v}" for k, v in s["counts"].items())
    print(f"{args.dataset}: {counts} -> {Path(args.out) / args.dataset}")
    if s["skipped"]:
        print(f"skipped {s['skipped']} bad records: " + ", ".join(f"{r} ({n})" for r, n in s["skipped_by_reason"].items()))
    return 0
