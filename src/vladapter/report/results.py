"""Results of a workflow config as rows: the paper's Table 1 layout, in Markdown and CSV.

A row is one run (method x LM x modality, with or without VL pre-training) read from
``metrics/<lm>/<run>.json`` (written by `vladapter evaluate`), or the majority-answer
baseline of a modality read from ``metrics/majority.json``. A run trained with several
seeds shows the mean ± the sample standard deviation over them; a run of one seed is
marked as such; the table ends with the differences of averages that exceed the spread.
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
    scores: dict[str, float] = field(default_factory=dict)  # task -> headline score (mean over seeds)
    submission_only: list[str] = field(default_factory=list)  # tasks predicted, not scored (no labels)
    seed_scores: list[dict[str, float]] = field(default_factory=list)  # per seed: task -> score ([] baseline)

    @property
    def n_seeds(self) -> int:
        return len(self.seed_scores)

    def sd(self, task: str) -> float | None:
        """Sample standard deviation of a task's score over the seeds (None: fewer than 2)."""
        return spread([s.get(task, math.nan) for s in self.seed_scores])[1]

    def average(self, tasks: list[str]) -> float:
        """Mean of the headline scores over ``tasks`` (NaN if one is missing)."""
        return _average(self.scores, tasks)

    def average_sd(self, tasks: list[str]) -> float | None:
        """Sample standard deviation over the seeds of each seed's average (None: fewer than 2)."""
        return spread([_average(s, tasks) for s in self.seed_scores])[1]


def spread(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation) of ``values``; the deviation is None for fewer than 2."""
    if not values:
        return math.nan, None
    mean = sum(values) / len(values)  # NaN (a missing score) stays NaN
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _average(scores: Mapping[str, float], tasks: list[str]) -> float:
    values = [scores.get(t, math.nan) for t in tasks]
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
        # one seed: the scores themselves (a run evaluated without --seeds), else each seed's
        per_seed = [dict(v.get("scores") or {}) for v in m["seeds"].values()] if "seeds" in m else [
            dict(m.get("scores") or {})]
        if len(per_seed) == 1:
            label += " (1 seed)"
        means = {t: spread([s[t] for s in per_seed if t in s])[0] for t in dict.fromkeys(k for s in per_seed for k in s)}
        rows.append(Row(run.modality, run.lm, run.method, label, run.pretrained,
                        params.get("percent"), params.get("trainable"), params.get("total"), means,
                        list(m.get("submission_only") or []), per_seed))
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


def _fmt_spread(value: float | None, sd: float | None) -> str:
    """``mean ± sd``, or the value alone when there is no spread (one seed, the baseline)."""
    return _fmt(value) if sd is None or _fmt(value) == "-" else f"{_fmt(value)} ± {_fmt(sd)}"


def beyond_spread(rows: list[Row], tasks: list[str]) -> list[tuple[Row, Row]]:
    """Pairs (a, b) of runs whose averages differ by more than their spread: a's mean minus
    its sd lies above b's mean plus its sd (both of several seeds), higher average first."""
    runs = [r for r in rows if r.n_seeds > 1 and not math.isnan(r.average(tasks))]
    runs.sort(key=lambda r: -r.average(tasks))
    return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
            if a.average(tasks) - a.average_sd(tasks) > b.average(tasks) + b.average_sd(tasks)]


def _differences(rows: list[Row], tasks: list[str]) -> list[str]:
    """The table's claims: which averages differ beyond the spread, and how many do not."""
    runs = [r for r in rows if r.n_seeds > 1]
    if len(runs) < 2:
        return ["Fewer than two runs with several seeds: no difference can be told from the spread.", ""]
    pairs = beyond_spread(rows, tasks)
    n_pairs = len(runs) * (len(runs) - 1) // 2
    out = [f"Averages that differ beyond the spread (mean - sd of the higher > mean + sd of the lower): "
           f"{len(pairs)} of {n_pairs} pairs of runs with several seeds; the others overlap."]
    out += [f"- {a.label} > {b.label}: {_fmt_spread(a.average(tasks), a.average_sd(tasks))} vs "
            f"{_fmt_spread(b.average(tasks), b.average_sd(tasks))}" for a, b in pairs]
    return out + [""]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def task_header(task: str) -> str:
    from vladapter.tasks import get_task

    metric = get_task(task).metric
    return f"{BENCHMARK.get(task, task)} ({METRIC_LABEL.get(metric, metric)})"


def markdown_table(config: Mapping[str, Any], rows: list[Row]) -> str:
    """One table per (modality, LM): method, % params, per-task scores, average."""
    seeds = sorted({r.n_seeds for r in rows if r.lm})
    out = ["# Results", "",
           f"Split: {config['evaluate'].get('split', 'test')}. Scores in %, CIDEr x 100; "
           "% params = trainable / total parameters of the VL model (petl.count). "
           f"Mean ± sample standard deviation over the seeds of each run ({'/'.join(map(str, seeds))} seeds); "
           "rows marked (1 seed) have no spread.", ""]
    for modality in experiments.MODALITIES:
        tasks = experiments.tasks(config, modality)
        lms = list(dict.fromkeys(r.lm for r in rows if r.modality == modality and r.lm))
        baseline = [r for r in rows if r.modality == modality and r.method == "majority"]
        for lm in lms:
            out += [f"## {modality.capitalize()}-text tasks, {lm}", ""]
            head = ["Method", "% params"] + [task_header(t) for t in tasks] + ["Avg."]
            out += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
            runs = [r for r in rows if r.modality == modality and r.lm == lm]
            for r in runs + baseline:
                cells = [r.label, _percent(r.percent)] + [_fmt_spread(r.scores.get(t), r.sd(t)) for t in tasks]
                out.append("| " + " | ".join(cells + [_fmt_spread(r.average(tasks), r.average_sd(tasks))]) + " |")
            out.append("")
            out += _differences(runs, tasks)
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
    """The table's rows, machine-readable: per task of either modality its mean over the
    seeds (column <task>) and their sample standard deviation (<task>_sd; empty for one
    seed); ``seeds`` counts them (0: the majority baseline)."""
    tasks = experiments.tasks(config, "image") + experiments.tasks(config, "video")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["modality", "lm", "method", "pretrained", "seeds", "params_percent", "trainable", "total",
                     *[c for t in tasks for c in (t, f"{t}_sd")], "average", "average_sd"])

    def number(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value:.4f}"

    for r in rows:
        own = experiments.tasks(config, r.modality)
        writer.writerow([r.modality, r.lm, r.method, "" if r.pretrained is None else int(r.pretrained), r.n_seeds,
                         number(r.percent), r.trainable or "", r.total or "",
                         *[c for t in tasks for c in (number(r.scores.get(t)), number(r.sd(t)))],
                         number(r.average(own)), number(r.average_sd(own))])
    return buf.getvalue()
