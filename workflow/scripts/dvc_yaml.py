"""Generate dvc.yaml from the Snakemake workflow, so the graph is defined once (Snakefile).

    python workflow/scripts/dvc_yaml.py            # rewrite dvc.yaml for config/config.yaml
    python workflow/scripts/dvc_yaml.py --check    # exit 1 if dvc.yaml is out of date

Each DVC stage wraps the Snakemake jobs of a group of rules: its command asks Snakemake
for those jobs' outputs, its deps are the files those jobs read from other stages, its
outs are what they write, its params the config sections the group reads. DVC versions
and caches; Snakemake decides which jobs are stale (params, mtimes), so re-running a
stage redoes only what changed. Outputs persist (DVC does not delete them before a stage
runs), checkpoints and features are cached, metrics are uncached, training curves are
plots. The job graph is read from Snakemake's own DAG for the config: nothing is listed
twice by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

import yaml

# rule -> DVC stage; stages run in this order. A new rule must be placed here (the
# generator refuses an unknown one).
STAGES = {
    "data": ["toyworld", "download", "prepare", "sample_frames"],
    "features": ["train_toy_clip", "extract_features", "probe"],
    "models": ["build_tokenizer", "pretrain_matching", "pretrain", "pretrain_video", "train"],
    "metrics": ["evaluate", "majority"],
    "report": ["report"],
}
# config sections each stage reads (DVC params from config/config.yaml)
PARAMS = {
    "data": ["world", "datasets", "features.frames", "features.frame_size"],
    "features": ["backbone", "features"],
    "models": ["lms", "tokenizer", "methods", "pretrain", "train", "features", "backbone"],
    "metrics": ["evaluate", "lms", "methods", "pretrain.compare"],
    "report": ["evaluate", "lms", "methods", "pretrain"],
}
CONFIG = "config/config.yaml"
UNCACHED_SUFFIXES = (".json", ".md", ".csv", ".png")


def snakemake_jobs(configfile: str, workdir: Path) -> list:
    """Every job of the workflow's DAG for ``configfile`` (as if nothing existed yet)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    with contextlib.redirect_stdout(io.StringIO()), SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        wf_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                              config_settings=ConfigSettings(configfiles=[Path(configfile)]),
                              snakefile=workdir / "Snakefile", workdir=workdir)
        dag_api = wf_api.dag(DAGSettings(forceall=True))
        workflow = dag_api.workflow_api._workflow
        # what `snakemake --filegraph` does: build the DAG without running anything
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        return [job for job in workflow.dag.jobs if job.rule.name != "all"]


def _stage_of(rule: str) -> str:
    for stage, rules in STAGES.items():
        if rule in rules:
            return stage
    raise SystemExit(f"rule {rule!r} belongs to no DVC stage: add it to STAGES in {__file__}")


def _out(path: str, stage: str) -> dict:
    """Features, checkpoints, prepared data: cached; small results: in git, not the cache.
    Everything persists: DVC must not delete outputs Snakemake would then rebuild."""
    if path.startswith("metrics/"):
        return {path: {"cache": False, "persist": True}}
    cache = not path.endswith(UNCACHED_SUFFIXES) or path.startswith("data/")
    return {path: {"cache": cache, "persist": True}}


def build(configfile: str = CONFIG, workdir: Path = Path(".")) -> dict:
    """The dvc.yaml document for ``configfile``."""
    jobs = snakemake_jobs(configfile, workdir)
    outputs: dict[str, list[str]] = {s: [] for s in STAGES}
    inputs: dict[str, list[str]] = {s: [] for s in STAGES}
    for job in jobs:
        stage = _stage_of(job.rule.name)
        outputs[stage] += [str(f) for f in job.output]
        inputs[stage] += [str(f) for f in job.input]
    doc: dict = {"stages": {}}
    plots = []
    for stage in STAGES:
        outs = sorted(set(outputs[stage]))
        if not outs:
            continue
        deps = sorted(set(inputs[stage]) - set(outs))
        entry: dict = {
            "cmd": "snakemake --profile profiles/default " + " ".join(outs),
            "deps": deps,
            "params": [{CONFIG: PARAMS[stage]}],
        }
        metrics = [o for o in outs if o.startswith("metrics/")]
        figures = [o for o in outs if o.endswith(".png")]
        others = [o for o in outs if o not in metrics and o not in figures]
        if others:
            entry["outs"] = [_out(o, stage) for o in others]
        if metrics:
            entry["metrics"] = [_out(o, stage) for o in metrics]
        if figures:
            entry["plots"] = [{o: {"cache": False, "persist": True}} for o in figures]
        doc["stages"][stage] = entry
        if stage == "models":
            # a run's folder holds one model per seed (seed-<n>/), each with its curve
            from vladapter import experiments

            seeds = {r.model_dir: r.seeds for r in experiments.runs(yaml.safe_load(Path(configfile).read_text()))}
            folders = [experiments.seed_dir(o, s) if o in seeds else o for o in outs for s in seeds.get(o, [None])]
            plots += [f"{o}/dvclive/plots/metrics/train/loss.tsv" for o in folders
                      if o.count("/") >= 2 and not o.startswith(("models/pretrain/", "models/tokenizer", "models/toyclip"))]
    if plots:
        # training curves of every run: `dvc plots show` / `dvc plots diff`
        doc["plots"] = [{p: {"x": "step", "y": "loss"}} for p in plots]
    return doc


def render(doc: dict) -> str:
    header = ("# Generated by workflow/scripts/dvc_yaml.py from the Snakemake workflow: do not edit.\n"
              "# Regenerate after changing the workflow or config/config.yaml's runs:\n"
              "#   python workflow/scripts/dvc_yaml.py\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=CONFIG, help=f"workflow config (default: {CONFIG})")
    parser.add_argument("--out", default="dvc.yaml", help="file to write (default: dvc.yaml)")
    parser.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = parser.parse_args(argv)
    text = render(build(args.configfile, Path.cwd()))
    out = Path(args.out)
    if args.check:
        if not out.exists() or out.read_text() != text:
            print(f"{out} is out of date with the workflow: run python {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out}: {len(yaml.safe_load(text)['stages'])} stages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
