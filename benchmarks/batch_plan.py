"""Memory and start-up time of the multi-task batch plan at paper scale, before and after.

A run's batch plan is the order of its global batches (task, example indices), computed
by TaskSampler from (seed, epoch). Before, the trainer built the whole run's list up
front (``list(sampler.iterate(0, total))``); now it walks a lazy RunPlan that holds one
epoch's order at a time. Paper image setup: VQA 605,102 / GQA 943,000 / NLVR2 86,373 /
COCO captions 566,747 training examples, base batch 500 (task batches 500 / 833 / 167 /
417), 20 epochs. Each variant runs in a fresh process; start-up = time until the first
batch is available; peak RSS above the process's baseline after imports.

    .venv/bin/python benchmarks/batch_plan.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import emit_result, machine_description, markdown_table, mib, peak_rss_bytes, run_child  # noqa: E402

SIZES = {"vqa": 605_102, "gqa": 943_000, "nlvr": 86_373, "caption": 566_747}
SCALES = {"vqa": 1.0, "gqa": 100 / 60, "nlvr": 20 / 60, "caption": 50 / 60}


def measure(variant: str, base: int, epochs: int) -> dict:
    from vladapter.train.sampler import TaskSampler

    baseline = peak_rss_bytes()
    sampler = TaskSampler(SIZES, {t: round(base * s) for t, s in SCALES.items()}, seed=0)
    total = sampler.total_batches(epochs)
    start = time.perf_counter()
    plan = list(sampler.iterate(0, total)) if variant == "before: list" else sampler.plan(0, total)
    first = next(iter(plan))
    startup = time.perf_counter() - start
    # walk the first epoch, as training does, so the lazy plan's epoch order is resident
    walked = sum(1 for _, spec in zip(range(sampler.batches_per_epoch), plan))
    return {"variant": variant, "batches": total, "first_task": first.task, "walked": walked,
            "startup_s": startup, "peak_rss_mib": mib(peak_rss_bytes() - baseline)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit_result(measure(args.child, args.base, args.epochs))
        return
    rows = [run_child([__file__, "--child", v, "--base", str(args.base), "--epochs", str(args.epochs)])
            for v in ("before: list", "after: lazy RunPlan")]
    before, after = rows
    print(json.dumps({"machine": machine_description(), "rows": rows}))
    print(markdown_table(
        ["plan", "batches in run", "start-up s", "peak RSS MiB", "x before (time)", "x before (memory)"],
        [[r["variant"], r["batches"], r["startup_s"], r["peak_rss_mib"], r["startup_s"] / before["startup_s"],
          r["peak_rss_mib"] / max(before["peak_rss_mib"], 1e-9)] for r in rows]))
    assert before["first_task"] == after["first_task"]  # the same order, only computed lazily


if __name__ == "__main__":
    main()
