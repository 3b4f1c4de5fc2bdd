"""Results of a workflow config as rows: the paper's Table 1 layout, in Markdown and CSV.

A row is one run (method x LM x modality, with or without VL pre-training) read from
``metrics/<lm>/<run>.json`` (written by `vladapter evaluate`), or the majority-answer
baseline of a modality read from ``metrics/majority.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from vladapter import experiments
from vladapter.data.datasets import DATASETS
from vladapter.errors import DataError

# how the paper names the benchmark of each task key
BENCHMARK = {d.task: d.label for d in DATASETS.values() if d.label}  # task key -> column name
METRIC_LABEL = {"vqa_score": "VQA score", "accuracy": "acc.", "cider": "CIDEr"}


@dataclass
class Row:
    modality: str
    lm: str                            # LM key, "" for the majority baseline
    method: str                        # preset name, or "majority"
    label: str                         # what the table shows
    pretrained: bool | None            # starts from the VL-pre-trained backbone (None: n/a)
    percent: float | None              # trainable / total parameters, %
    trainable: int | None
    total: int | None
    scores: dict[str, float] = field(default_factory=dict)  # task -> headline score
    submission_only: list[str] = field(default_factory=list)  # tasks predicted, not scored (no labels)

    def average(self, tasks: list[str]) -> float:
        """Mean of the headline scores over ``tasks`` (NaN if one is missing)."""
        values = [self.scores.get(t, math.nan) for t in tasks]
        return sum(values) / len(values) if values else math.nan


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    if not path.exists():
        raise DataError("metrics file not found", path=path, fix=fix)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=path, fix=fix) from None


def _method_label(method: str) -> str:
    from vladapter.petl.registry import PRESETS  # the paper's row names

    return PRESETS[method].row if method in PRESETS else method


def collect(config: Mapping[str, Any], root: str | Path = ".") -> list[Row]:
    """Every run of ``config`` (table order) and, per modality, the majority baseline."""
    root = Path(root)
    rows = []
    for run in experiments.runs(config):
        path = root / run.metrics_path
        m = _read_json(path, fix=f"run `snakemake {run.metrics_path}` (vladapter evaluate)")
        params = m.get("params") or {}
        label = _method_label(run.method) + ("" if run.pretrained or not config["pretrain"]["enabled"]
                                             else " (no VL pre-training)")
        rows.append(Row(run.modality, run.lm, run.method, label, run.pretrained,
                        params.get("percent"), params.get("trainable"), params.get("total"),
                        dict(m.get("scores") or {}), list(m.get("submission_only") or [])))
    majority = _read_json(root / "metrics" / "majority.json",
                          fix="run `snakemake metrics/majority.json` (vladapter evaluate --majority)")
    for modality in experiments.MODALITIES:
        tasks = experiments.tasks(config, modality)
        if tasks and any(r.modality == modality for r in rows):
            scores = {t: majority["scores"][t] for t in tasks if t in majority.get("scores", {})}
            only = [t for t in tasks if t in (majority.get("submission_only") or [])]
            rows.append(Row(modality, "", "majority", "majority answer (baseline)", None,
                            None, None, None, scores, only))
    return rows


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def task_header(task: str) -> str:
    from vladapter.tasks import get_task

    metric = get_task(task).metric
    return f"{BENCHMARK.get(task, task)} ({METRIC_LABEL.get(metric, metric)})"


def markdown_table(config: Mapping[str, Any], rows: list[Row]) -> str:
    """One table per (modality, LM): method, % params, per-task scores, average."""
    out = ["# Results", "",
           f"Split: {config['evaluate'].get('split', 'test')}. Scores in %, CIDEr x 100; "
           "% params = trainable / total parameters of the VL model (petl.count).", ""]
    for modality in experiments.MODALITIES:
        tasks = experiments.tasks(config, modality)
        lms = list(dict.fromkeys(r.lm for r in rows if r.modality == modality and r.lm))
        baseline = [r for r in rows if r.modality == modality and r.method == "majority"]
        for lm in lms:
            out += [f"## {modality.capitalize()}-text tasks, {lm}", ""]
            head = ["Method", "% params"] + [task_header(t) for t in tasks] + ["Avg."]
            out += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
            for r in [r for r in rows if r.modality == modality and r.lm == lm] + baseline:
                cells = [r.label, _percent(r.percent)] + [_fmt(r.scores.get(t)) for t in tasks]
                out.append("| " + " | ".join(cells + [_fmt(r.average(tasks))]) + " |")
            out.append("")
            only = submission_only(rows, modality, lm)
            if only:
                names = ", ".join(BENCHMARK.get(t, t) for t in only)
                out += [f"Submission only (the {config['evaluate'].get('split', 'test')} split has no labels): "
                        f"{names}: predictions in the benchmark's format under predictions/{lm}/<run>/, "
                        "for the leaderboard; shown as -.", ""]
    return "\n".join(out)


def submission_only(rows: list[Row], modality: str, lm: str) -> list[str]:
    """Tasks that some run of (modality, LM) could only submit, in first-seen order."""
    tasks = [t for r in rows if r.modality == modality and r.lm == lm for t in r.submission_only]
    return list(dict.fromkeys(tasks))


def scores_csv(config: Mapping[str, Any], rows: list[Row]) -> str:
    """The table's rows, machine-readable: one column per task of either modality."""
    tasks = experiments.tasks(config, "image") + experiments.tasks(config, "video")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["modality", "lm", "method", "pretrained", "params_percent", "trainable", "total",
                     *tasks, "average"])
    for r in rows:
        own = experiments.tasks(config, r.modality)
        writer.writerow([r.modality, r.lm, r.method, "" if r.pretrained is None else int(r.pretrained),
                         "" if r.percent is None else f"{r.percent:.4f}", r.trainable or "", r.total or "",
                         *["" if t not in r.scores else f"{r.scores[t]:.4f}" for t in tasks],
                         f"{r.average(own):.4f}"])
    return buf.getvalue()
