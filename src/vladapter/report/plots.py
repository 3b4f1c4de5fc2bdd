"""Figures of the report: average score vs trained parameters (the paper's Figure 1) and
training curves from the dvclive logs of each run (its first seed)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from vladapter import experiments  # noqa: E402
from vladapter.report.results import Row, submission_only  # noqa: E402
from vladapter.utils.io import atomic_path  # noqa: E402


def _panels(config: Mapping[str, Any], rows: list[Row]) -> list[tuple[str, str]]:
    """(modality, lm) pairs that have runs, in table order."""
    return list(dict.fromkeys((r.modality, r.lm) for r in rows if r.lm))


def params_vs_score(config: Mapping[str, Any], rows: list[Row], out: str | Path) -> None:
    """One panel per (modality, LM): each run at (% trained parameters, average score), with
    an error bar of ± the sample standard deviation over its seeds (none for one seed)."""
    panels = _panels(config, rows)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.5 * max(len(panels), 1), 5), squeeze=False)
    for ax, (modality, lm) in zip(axes[0], panels):
        # the average over the tasks that have scores: submission-only ones have none
        only = submission_only(rows, modality, lm)
        tasks = [t for t in experiments.tasks(config, modality) if t not in only]
        ax.set_title(f"{modality}-text tasks, {lm}")
        if not tasks:
            ax.text(0.5, 0.5, "no scored task: submission only", ha="center", transform=ax.transAxes)
            continue
        for r in (r for r in rows if (r.modality, r.lm) == (modality, lm) and r.percent):
            marker = "o" if r.pretrained in (True, None) else "s"
            sd = r.average_sd(tasks)
            ax.errorbar(r.percent, r.average(tasks), yerr=sd, fmt=marker, markersize=6, capsize=3)
            ax.annotate(r.label, (r.percent, r.average(tasks)), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        for r in (r for r in rows if r.modality == modality and r.method == "majority"):
            ax.axhline(r.average(tasks), linestyle="--", color="grey", label=r.label)
        ax.set_xscale("log")
        ax.set_xlabel("trained parameters (% of the VL model, log scale)")
        ax.set_ylabel(f"average score over {', '.join(tasks)} (mean ± sd over seeds)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(steps, values) of a dvclive plot TSV (columns: timestamp?, step, <metric>)."""
    steps, values = [], []
    with open(path) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            name = [k for k in row if k not in ("step", "timestamp")][0]
            steps.append(float(row["step"]))
            values.append(float(row[name]))
    return steps, values


def training_curves(config: Mapping[str, Any], rows: list[Row], out: str | Path, root: str | Path = ".") -> int:
    """Training loss per step of every run (one panel per modality x LM); returns the
    number of curves drawn (runs without a dvclive loss log are left out)."""
    root = Path(root)
    panels = _panels(config, rows)
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(6.5 * max(len(panels), 1), 4.5), squeeze=False)
    drawn = 0
    for ax, (modality, lm) in zip(axes[0], panels):
        for run in experiments.runs(config):
            if (run.modality, run.lm) != (modality, lm):
                continue
            # the first seed's: one curve per run keeps the figure readable
            path = root / run.seed_dir(run.seeds[0]) / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
            if path.exists():
                steps, values = read_curve(path)
                ax.plot(steps, values, label=run.name.split("-", 1)[1], linewidth=1,
                        marker="." if len(steps) < 30 else None)  # short logs stay visible
                drawn += 1
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{modality}-text tasks, {lm}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return drawn
