"""Where a workflow run's time went: one row per stage from Snakemake's job benchmarks.

    python workflow/scripts/stage_times.py                 # logs/benchmarks of this folder
    python workflow/scripts/stage_times.py --logs other/logs/benchmarks

Every rule writes ``logs/benchmarks/<stage>[/...]/<job>.tsv`` (its ``benchmark:``); a
stage is the first path component below that folder (the file's name for top-level
files: toyworld, majority, report). Prints a Markdown table: jobs, wall seconds and CPU
seconds summed over the stage's jobs, CPU seconds per job, and each stage's share of
the CPU seconds. Jobs run side by side, so the wall seconds add up to more than the
run took. On an idle machine the wall seconds are the measure; on one shared with other
work they are mostly waiting, and the CPU seconds say more, but Snakemake samples them
(each second, after 30 s every 30 s), so they fall short by up to one interval per job.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_jobs(logs: Path) -> list[tuple[str, float, float]]:
    """(stage, wall seconds, CPU seconds) of every benchmark file under ``logs``."""
    jobs = []
    for path in sorted(logs.rglob("*.tsv")):
        relative = path.relative_to(logs)
        stage = relative.parts[0] if len(relative.parts) > 1 else path.stem
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            raise SystemExit(f"{path}: no benchmark row; rerun the job or delete the file")
        last = rows[-1]  # a job benchmarked again (repeat) appends rows; the last is the run's
        cpu = last.get("cpu_time", "NA")
        jobs.append((stage, float(last["s"]), float(cpu) if cpu not in ("", "NA") else 0.0))
    return jobs


def stage_table(jobs: list[tuple[str, float, float]]) -> str:
    """The per-stage Markdown table, stages by CPU seconds, largest first, and a total row."""
    stages: dict[str, list[tuple[float, float]]] = {}
    for stage, wall, cpu in jobs:
        stages.setdefault(stage, []).append((wall, cpu))
    total_cpu = sum(cpu for _, _, cpu in jobs) or 1.0
    lines = ["| stage | jobs | wall s (sum) | CPU s (sum) | CPU s / job | CPU share |",
             "|---|---:|---:|---:|---:|---:|"]
    for stage, runs in sorted(stages.items(), key=lambda kv: -sum(cpu for _, cpu in kv[1])):
        wall, cpu = sum(w for w, _ in runs), sum(c for _, c in runs)
        lines.append(f"| {stage} | {len(runs)} | {wall:.1f} | {cpu:.1f} | {cpu / len(runs):.1f} | "
                     f"{100 * cpu / total_cpu:.0f} % |")
    wall = sum(w for _, w, _ in jobs)
    lines.append(f"| all | {len(jobs)} | {wall:.1f} | {sum(c for _, _, c in jobs):.1f} | | 100 % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", default="logs/benchmarks", help="benchmark folder (default: logs/benchmarks)")
    args = parser.parse_args(argv)
    logs = Path(args.logs)
    jobs = read_jobs(logs) if logs.is_dir() else []
    if not jobs:
        print(f"no job benchmarks under {logs}: run the workflow first", file=sys.stderr)
        return 2
    sys.stdout.write(stage_table(jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
