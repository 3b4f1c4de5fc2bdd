"""DVC over the workflow, for real, on the smoke config in a temporary git repository with
the repository's DVC settings (.dvc/config, .dvcignore): after a Snakemake run (conftest's
smoke_workflow), `dvc repro` runs its stages and Snakemake finds no job to run in any of
them; a second `dvc repro` and then `snakemake -n` have nothing to do (DVC's caching must
not touch what Snakemake sees); `dvc exp run -S` followed by `dvc metrics diff` shows the
changed metrics; a run published (dvc.lock, metrics and results in git, the cache pushed to
a local-folder remote) and pulled into a fresh clone has nothing to redo there, and
evaluating a pulled checkpoint gives the published metrics, byte for byte."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from vladapter import experiments
from workflow_helpers import REPO, copy_run, planned_jobs, snakemake, snakemake_env

pytestmark = pytest.mark.slow

BIN = snakemake_env()["PATH"].split(":")[0]


def _run(cwd, *cmd, timeout=900):
    proc = subprocess.run(list(cmd), cwd=cwd, env=snakemake_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout + proc.stderr


def _git(cwd, *args):
    return _run(cwd, "git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args)


def _dvc(cwd, *args):
    return _run(cwd, f"{BIN}/dvc", *args)


def _dvc_json(cwd, *args):
    proc = subprocess.run([f"{BIN}/dvc", *args, "--json"], cwd=cwd, env=snakemake_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _refused(cwd, *cmd) -> str:
    """The message of a command that must refuse (exit 2, no traceback)."""
    proc = subprocess.run(list(cmd), cwd=cwd, env=snakemake_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stderr


def _git_dvc_repo(work):
    """Make the workflow folder ``work`` a git + DVC repository with the repository's DVC
    settings and the generated dvc.yaml; its outputs stay where Snakemake wrote them."""
    (work / ".gitignore").write_text("/data/\n/models/\n/logs/\n/predictions/\n/.snakemake/\n")
    _git(work, "init", "-q")
    _dvc(work, "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", work / ".dvc" / "config")
    shutil.copy(REPO / ".dvcignore", work / ".dvcignore")
    _run(work, sys.executable, "workflow/scripts/dvc_yaml.py")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "smoke workflow")
    return work


def _file_times(work) -> dict[str, int]:
    """Modification time of every file under the folders dvc.yaml's outputs are in."""
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"].values()
    tops = {next(iter(o)).split("/")[0] for s in stages for k in ("outs", "metrics", "plots") for o in s.get(k, [])}
    return {str(p.relative_to(work)): p.stat().st_mtime_ns for top in sorted(tops)
            for p in (work / top).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory, smoke_workflow):
    """A git + DVC repository holding the workflow with the smoke config as its default and
    the session's smoke run's outputs (a copy): DVC's stages run Snakemake over them."""
    return _git_dvc_repo(copy_run(smoke_workflow[0], tmp_path_factory.mktemp("dvc") / "work"))


def test_dvc_repro_after_a_snakemake_run_runs_no_job(dvc_repo):
    # no dvc.lock yet: DVC runs every stage, and each stage's Snakemake finds its outputs up
    # to date, although DVC has committed the previous stages' outputs meanwhile
    stages = list(yaml.safe_load((dvc_repo / "dvc.yaml").read_text())["stages"])
    before = _file_times(dvc_repo)
    first = _dvc(dvc_repo, "repro")
    for stage in stages:
        assert f"Running stage '{stage}'" in first
    assert first.count("Nothing to be done") == len(stages), first[-6000:]
    assert "Job stats" not in first  # Snakemake's summary of the jobs it runs
    # committing to the cache left every file Snakemake wrote as it was, time included
    assert _file_times(dvc_repo) == before
    assert (dvc_repo / "results" / "table.md").exists()
    assert (dvc_repo / "dvc.lock").exists()
    # checkpoints (folders) and features are in the DVC cache
    assert any((dvc_repo / ".dvc" / "cache").rglob("*.dir"))
    lock = (dvc_repo / "dvc.lock").read_text()
    assert "models/tiny-t5/image-single_adapter" in lock and "md5" in lock

    second = _dvc(dvc_repo, "repro")
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


def test_published_run_pulled_into_a_clone_has_nothing_to_redo(smoke_workflow, tmp_path):
    """What a lab does: one member publishes a finished run (make publish, git commit, dvc
    push), another clones the repository and pulls it (make pull)."""
    lab = _git_dvc_repo(copy_run(smoke_workflow[0], tmp_path / "lab"))
    share = [sys.executable, "workflow/scripts/dvc_share.py"]
    config = yaml.safe_load((lab / "config" / "config.yaml").read_text())
    run = experiments.runs(config)[0]
    # an unfinished run is not published
    (lab / run.metrics_path).rename(tmp_path / "metrics.json")
    assert "jobs left to run" in _refused(lab, *share, "publish")
    assert not (lab / "dvc.lock").exists()
    (tmp_path / "metrics.json").rename(lab / run.metrics_path)
    _run(lab, *share, "publish")  # dvc.lock records what Snakemake built; nothing reran
    assert planned_jobs(lab) == {}
    _git(lab, "commit", "-qm", "results of the smoke run")
    _dvc(lab, "remote", "add", "-d", "store", str(tmp_path / "remote"))
    _git(lab, "commit", "-qam", "the lab's remote")
    _dvc(lab, "push")

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(lab), str(clone))
    assert not (clone / "data").exists() and not (clone / "models").exists()
    pulled = _run(clone, *share, "pull")
    assert "marked it up to date" in pulled
    # features and every seed's checkpoint came from the remote
    assert sorted(p.name for p in (clone / "data" / "features").glob("*.h5")) == \
        sorted(p.name for p in (lab / "data" / "features").glob("*.h5"))
    for seed in run.seeds:
        assert list((clone / experiments.seed_dir(run.model_dir, seed)).glob("*.safetensors"))
    assert planned_jobs(clone) == {}
    assert _dvc_json(clone, "status") == {}

    # the pulled checkpoints evaluate to the published metrics, and DVC compares with them
    snakemake(clone, "--force", run.metrics_path)
    assert (clone / run.metrics_path).read_bytes() == (lab / run.metrics_path).read_bytes()
    assert _dvc_json(clone, "metrics", "diff") == {}

    # outputs that no longer match the config are not marked up to date
    config["evaluate"]["max_examples"] = 4
    (clone / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    refused = _refused(clone, *share, "pull")
    assert "differs from dvc.lock" in refused and "metrics" in refused
