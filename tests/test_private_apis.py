"""The two places that lean on a library's private API, each pinned by a test: dvclive's
``Live._init_dvc`` (train.loop._live) and Snakemake's ``_workflow`` / ``_build_dag``
(workflow/scripts/dvc_yaml.py). A library upgrade that changes them fails here."""

from __future__ import annotations

import importlib.util
import subprocess
from collections import Counter

from vladapter.train.loop import _live
from workflow_helpers import REPO, copy_workflow, planned_jobs


def test_dvclive_writes_only_its_files_inside_a_git_checkout(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    run = tmp_path / "models" / "run"
    live = _live(run, resume=False)
    live.log_metric("train/loss", 1.5)
    live.next_step()
    live.end()
    assert (run / "dvclive" / "metrics.json").is_file()
    assert (run / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert not (tmp_path / ".dvc").exists() and not (tmp_path / "dvc.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "models"]


def test_dvc_yaml_sees_the_jobs_a_dry_run_plans(tmp_path):
    spec = importlib.util.spec_from_file_location("dvc_yaml", REPO / "workflow" / "scripts" / "dvc_yaml.py")
    dvc_yaml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dvc_yaml)
    work = copy_workflow(tmp_path)
    jobs = Counter(job.rule.name for job in dvc_yaml.snakemake_jobs(str(work / "config" / "smoke.yaml"), work))
    planned = planned_jobs(work, "--configfile", "config/smoke.yaml")
    planned.pop("all")
    assert dict(jobs) == planned
