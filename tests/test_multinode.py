"""Multi-node DDP: the SLURM profile's launch lines for 2 nodes x 4 GPUs, and the c10d
launcher run for real in a job of the local SLURM cluster (2 gloo processes, CPU),
ending with the weights of one process."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import vl_world
from test_ddp import assert_same_training
from test_slurm import slurm_cluster  # noqa: F401  (the fixture: a real single-node cluster)
from vladapter.train.launch import multinode
from workflow_helpers import copy_workflow, snakemake_env

REPO = Path(__file__).resolve().parents[1]


def test_two_nodes_of_four_gpus_launch_torchrun_on_every_node_with_a_c10d_rendezvous(tmp_path):
    work = copy_workflow(tmp_path)
    config = yaml.safe_load((work / "config" / "paper-image.yaml").read_text())
    config["resources"]["train"].update(nodes=2, gpu=4, threads=4)
    (work / "nodes.yaml").write_text(yaml.safe_dump(config))
    env = {**snakemake_env(), "VLADAPTER_SLURM_PARTITION": "", "VLADAPTER_SLURM_ACCOUNT": ""}
    # --cores: a dry run caps threads at the cores it is given; SLURM jobs are not capped
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "-n", "-p",
                          "--cores", "64", "--configfile=nodes.yaml"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    jobs = {}
    for block in out.split("\n\n"):
        rule = re.search(r"rule (\w+):", block)
        if rule and rule.group(1) in ("train", "evaluate"):
            jobs.setdefault(rule.group(1), []).append(block)
    assert jobs["train"] and jobs["evaluate"]
    for block in jobs["train"]:
        shell = block.split("Shell command: ")[1]
        assert shell.startswith("exec " + multinode(2, 4, 16) + "vladapter train --resume ")
        # srun is given the CPUs per node itself (SLURM >= 22.05 no longer passes the job's on)
        assert ("srun --nodes=2 --ntasks-per-node=1 --cpus-per-task=16 --kill-on-bad-exit=1 python -m "
                "vladapter.train.launch torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d "
                "--rdzv-endpoint=") in shell and "--standalone" not in shell
        assert re.search(r"\bnodes=2, tasks=2, tasks_per_gpu=0, mpi=srun, gres=gpu:4\b", block)
        assert "threads: 16" in block  # 4 per GPU process, 4 processes per node
        assert "slurm_extra=--signal=TERM@300" in block  # warned before its time limit
    for block in jobs["evaluate"]:
        assert "gpu=1" in block and "nodes=" not in block and "threads: 4" in block


@pytest.mark.slurm
@pytest.mark.slow
def test_c10d_launch_line_in_a_real_slurm_job_equals_one_process(slurm_cluster, tmp_path):  # noqa: F811
    world = vl_world.build(tmp_path / "world", n_train=24)
    args = ["train", "--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--tasks", "vqa,nlvr,caption,tvqa", "--n-video-frames", "8",
            "--batch-size", "6", "--steps", "6", "--log-every", "1", "--lr", "1e-3", "--dropout", "0",
            "--checkpoint-every", "0"]
    single, double = tmp_path / "one", tmp_path / "two"
    env = snakemake_env(slurm_cluster.env)
    subprocess.run([sys.executable, "-m", "vladapter.cli", *args, "--out", str(single)],
                   check=True, env=env, capture_output=True)

    # the workflow's multi-node line (1 node here: the test cluster has one) as a batch job
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\nset -euxo pipefail\n" + multinode(1, 2, 2)  # -x: the expanded line in the log
                      + " ".join(["vladapter", *args, "--out", str(double)]) + "\n")
    submitted = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--ntasks=1", "--cpus-per-task=2",
                                "--partition=debug", f"--output={tmp_path / 'job.log'}", str(script)],
                               env=env, capture_output=True, text=True, check=True, cwd=tmp_path)
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
        if not state.stdout.strip():
            break
        time.sleep(1)
    log = (tmp_path / "job.log").read_text() if (tmp_path / "job.log").exists() else ""
    assert (double / "train.json").exists(), log[-4000:]
    assert '"world_size": 2' in (double / "train.json").read_text()
    # the rendezvous address came from the allocation (its node, a free port there), the id from the job
    assert re.search(rf"--rdzv-backend=c10d --rdzv-endpoint=localhost:\d+ --rdzv-id={job} ", log), log[-2000:]

    assert_same_training(single, double, steps=6)


def sbatch_and_wait(env: dict, script: Path, log: Path, *options: str) -> str:
    """Submit ``script`` to the test cluster, wait for its end; returns its log."""
    submitted = subprocess.run(["sbatch", "--parsable", "--partition=debug", f"--output={log}", *options, str(script)],
                               env=env, capture_output=True, text=True, check=True, cwd=script.parent)
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True)
        if not state.stdout.strip():
            break
        time.sleep(0.5)
    return log.read_text() if log.exists() else ""


@pytest.mark.slurm
@pytest.mark.slow
def test_the_multinode_srun_gives_each_node_the_jobs_cpus(slurm_cluster, tmp_path):  # noqa: F811
    """The job asks for 2 CPUs per node; the step the multi-node line starts (torchrun, its
    ranks and their loader workers) must get them too: since SLURM 22.05 srun no longer
    inherits --cpus-per-task, and where a step gets only what it asks for (SLURM_EXACT: a
    site's policy, or 20.11's default) it got 1 CPU. (By default 22.05 gives a step of one
    task per node the node's whole allocation: without SLURM_EXACT both lines get 2 here.)"""
    env = snakemake_env(slurm_cluster.env)
    script = tmp_path / "job.sh"
    # the launch line with a rank that prints its step's allocation instead of training
    script.write_text("#!/bin/bash\nset -euo pipefail\nexport SLURM_EXACT=1\n" + multinode(1, 1, 2)
                      + "bash -c 'scontrol show step \"$SLURM_JOB_ID.$SLURM_STEP_ID\"'\n")
    log = sbatch_and_wait(env, script, tmp_path / "job.log", "--nodes=1", "--ntasks=1", "--cpus-per-task=2")
    step = re.search(r"StepId=\d+\.0\b.*?(?=\n\S|\Z)", log, re.S)
    assert step, log[-3000:]
    assert re.search(r"\bCPUs=2\b", step.group(0)), step.group(0)
