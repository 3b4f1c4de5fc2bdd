"""Results report of a workflow config (`vladapter report`).

Reads metrics/<lm>/<run>.json of every run the config describes, metrics/majority.json
and each run's dvclive training log, and writes into --out:

    table.md              the paper's Table 1 layout: method, % params, per-task scores, average
                          (image-text and video-text, per LM; a majority-answer baseline row)
    scores.csv            the same rows, machine-readable
    params_vs_score.png   average score vs % trained parameters (the paper's Figure 1)
    curves.png            training loss per step of every run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from vladapter.errors import ConfigError
from vladapter.utils.io import write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="config/config.yaml",
                        help="workflow config whose runs are reported (default: config/config.yaml)")
    parser.add_argument("--settings", help="the workflow config as one JSON object (what the workflow's report job "
                        "receives; instead of --config)")
    parser.add_argument("--root", default=".",
                        help="folder holding metrics/ and models/ (default: the current folder)")
    parser.add_argument("--out", default="results", help="output folder (default: results)")


def run(args: argparse.Namespace) -> int:
    from vladapter.report import plots
    from vladapter.report.results import collect, markdown_table, scores_csv

    if args.settings is not None:
        try:
            config = json.loads(args.settings)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--settings is not a JSON object: {e}") from None
    else:
        path = Path(args.config)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        config = yaml.safe_load(path.read_text())
    rows = collect(config, args.root)
    out = Path(args.out)
    write_text(out / "table.md", markdown_table(config, rows))
    write_text(out / "scores.csv", scores_csv(config, rows))
    plots.params_vs_score(config, rows, out / "params_vs_score.png")
    curves = plots.training_curves(config, rows, out / "curves.png", root=args.root)
    n_runs = sum(r.method != "majority" for r in rows)
    print(f"report: {n_runs} runs, {curves} training curves -> {out}/table.md, scores.csv, "
          "params_vs_score.png, curves.png")
    return 0
