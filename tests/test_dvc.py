"""DVC over the workflow, for real, on the smoke config in a temporary git repository:
`dvc repro` runs its stages (Snakemake over the session's smoke run, conftest's
smoke_workflow), a second `dvc repro` and then `snakemake -n` have nothing to do
(DVC's caching must not touch what Snakemake sees), and `dvc exp run -S` followed by
`dvc metrics diff` shows the changed metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workflow_helpers import copy_run, planned_jobs, snakemake_env

pytestmark = pytest.mark.slow

BIN = snakemake_env()["PATH"].split(":")[0]


def _run(cwd, *cmd, timeout=900):
    proc = subprocess.run(list(cmd), cwd=cwd, env=snakemake_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout + proc.stderr


def _git(cwd, *args):
    return _run(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args)


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, smoke_workflow):
    """A git + DVC repository holding the workflow with the smoke config as its default and
    the session's smoke run's outputs (a copy): DVC's stages run Snakemake over them."""
    work = copy_run(smoke_workflow[0], tmp_path_factory.mktemp("dvc") / "work")
    (work / ".gitignore").write_text("/data/\n/models/\n/logs/\n/predictions/\n/.snakemake/\n")
    _git(work, "init", "-q")
    _run(work, f"{BIN}/dvc", "init", "-q")
    _run(work, sys.executable, "workflow/scripts/dvc_yaml.py")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "smoke workflow")
    return work


def test_dvc_repro_runs_the_workflow_then_nothing(dvc_repo):
    first = _run(dvc_repo, f"{BIN}/dvc", "repro")
    for stage in ("data", "features", "models", "metrics", "report"):
        assert f"Running stage '{stage}'" in first
    assert (dvc_repo / "results" / "table.md").exists()
    assert (dvc_repo / "dvc.lock").exists()
    # checkpoints (folders) and features are in the DVC cache
    assert any((dvc_repo / ".dvc" / "cache").rglob("*.dir"))
    lock = (dvc_repo / "dvc.lock").read_text()
    assert "models/tiny-t5/image-single_adapter" in lock and "md5" in lock

    second = _run(dvc_repo, f"{BIN}/dvc", "repro")
    assert "Running stage" not in second and "Data and pipelines are up to date" in second
    # DVC's commits left every mtime Snakemake compares as it was
    assert planned_jobs(dvc_repo) == {}


def test_dvc_exp_run_changes_metrics(dvc_repo):
    if not (dvc_repo / "dvc.lock").exists():
        _run(dvc_repo, f"{BIN}/dvc", "repro")
    _git(dvc_repo, "add", "-A")
    _git(dvc_repo, "commit", "-qm", "smoke results")
    out = _run(dvc_repo, f"{BIN}/dvc", "exp", "run", "-S", "config/config.yaml:evaluate.max_examples=4")
    # only the stages reading `evaluate` ran; training was not repeated
    assert "Running stage 'metrics'" in out and "Running stage 'models'" not in out
    diff = json.loads(_run(dvc_repo, f"{BIN}/dvc", "metrics", "diff", "--json"))
    changed = diff["metrics/tiny-t5/image-single_adapter.json"]
    assert changed["seeds.0.tasks.vqa.n"] == {"old": 8, "new": 4, "diff": -4}  # every seed of the run
    assert changed["seeds.1.tasks.vqa.n"] == {"old": 8, "new": 4, "diff": -4}
    assert planned_jobs(dvc_repo) == {}
