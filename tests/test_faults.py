"""Kills and second writers under the real workflow: a training job SIGKILLed mid-run
resumes from its checkpoint when Snakemake is rerun, and ends with the weights of an
uninterrupted run; a run folder being written by another process is refused clearly;
Ctrl-C during `vladapter prepare` over an older output leaves that output whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from vladapter.train.checkpoint import list_checkpoints
from vladapter.train.workdir import run_lock, work_dir
from workflow_helpers import BIN, copy_workflow, snakemake, snakemake_env

pytestmark = [pytest.mark.faults, pytest.mark.slow]

RUN = Path("models/tiny-t5/image-single_adapter-nopt")
MODEL = RUN / "seed-0"  # the run's one seed (faults.yaml): its model and, beside the run, its work folder
LOG = Path("logs/train/tiny-t5/image-single_adapter-nopt.log")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The smoke workflow cut to one image run (no pre-training, no video), with a training
    job long enough to be killed after its first checkpoints; its inputs already built."""
    work = copy_workflow(tmp_path_factory.mktemp("faults"))
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    config["datasets"] = {"image": ["vqav2"], "video": []}
    config["methods"] = {"image": ["single_adapter"], "video": []}
    config["pretrain"].update(enabled=False, matching={"enabled": False}, video={"enabled": False})
    config["train"].update(steps=16, checkpoint_every=2, keep_checkpoints=1, seeds=[0])
    (work / "faults.yaml").write_text(yaml.safe_dump(config))
    inputs = ["data/features/coco.toyclip-resnet.h5", "models/tokenizer", "data/prepared/vqav2/train.jsonl"]
    snakemake(work, "--configfile=faults.yaml", *inputs, timeout=600)
    return work


def _start(work: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/default", "--configfile=faults.yaml", *args]
    return subprocess.Popen(cmd, cwd=work, env=snakemake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: killed with its jobs


def test_killed_training_job_resumes_from_its_checkpoint_to_the_uninterrupted_weights(work):
    proc = _start(work, str(RUN))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list_checkpoints(work_dir(work / MODEL)) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job at once, like a lost node
    proc.wait()
    assert not (work / MODEL / "train.json").exists(), "the job finished before it could be killed"
    killed_at = list_checkpoints(work_dir(work / MODEL))
    assert killed_at, "no checkpoint before the kill"

    snakemake(work, "--unlock", "--configfile=faults.yaml")
    snakemake(work, "--configfile=faults.yaml", str(RUN))  # the profile reruns incomplete jobs
    log = (work / LOG).read_text()
    assert f"resumed from step {int(killed_at[-1].name.split('-')[1])} of 16" in log
    resumed = load_file(work / MODEL / "adapter.safetensors")
    assert not work_dir(work / MODEL).exists()  # a finished run keeps only its result

    snakemake(work, "--configfile=faults.yaml", f"--forcerun={RUN}", str(RUN))
    assert "resumed from" not in (work / LOG).read_text()
    uninterrupted = load_file(work / MODEL / "adapter.safetensors")
    assert resumed.keys() == uninterrupted.keys() and len(resumed) > 10
    for name in resumed:
        assert torch.equal(resumed[name], uninterrupted[name]), name


def test_a_second_writer_is_refused_with_a_clear_message(work):
    # a process holding the run's lock, like a job left running after snakemake was killed
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from vladapter.train.workdir import "
         "run_lock; lock = run_lock(Path(sys.argv[1])); lock.__enter__(); print('locked', flush=True); "
         "time.sleep(120)", str(work_dir(work / MODEL))],
        stdout=subprocess.PIPE, text=True, env=snakemake_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = snakemake(work, "--configfile=faults.yaml", f"--forcerun={RUN}", str(RUN), check=False)
        assert proc.returncode != 0
        log = (work / LOG).read_text()
        assert f"is being written by pid {holder.pid}" in log and "Traceback" not in log
    finally:
        holder.kill()
        holder.wait()
    with run_lock(work_dir(work / MODEL)):  # the lock died with its holder
        pass


def _nlvr2(raw: Path, n: int) -> None:
    """NLVR2 statements in the published layout: ``n`` each for train and dev, a few for test1."""
    folder = raw / "nlvr2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", n), ("dev", n), ("test1", 3)):
        lines = (json.dumps({"identifier": f"{name}-{i}-0-0", "sentence": f"statement {i}",
                             "label": "True" if i % 2 else "False"}) for i in range(count))
        (folder / f"{name}.json").write_text("\n".join(lines) + "\n")


def _prepared(folder: Path) -> dict:
    """What a prepared folder holds: its summary's counts and each split file's lines."""
    return {"summary": json.loads((folder / "summary.json").read_text())["counts"],
            "lines": {s: len((folder / f"{s}.jsonl").read_bytes().splitlines()) for s in ("train", "val", "test")}}


def test_ctrl_c_during_prepare_leaves_the_older_output_whole(tmp_path):
    """(issue 28: was a new train.jsonl beside the old val.jsonl, summary.json still the old one's)"""
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    args = [str(BIN / "vladapter"), "prepare", "--dataset", "nlvr2", "--raw", str(raw), "--out", str(out),
            "--no-media-check"]
    _nlvr2(raw, 10)
    subprocess.run(args, check=True, capture_output=True, env=snakemake_env(), timeout=300)
    older = _prepared(out / "nlvr2")
    assert older["summary"] == older["lines"] == {"train": 10, "val": 10, "test": 3}

    _nlvr2(raw, 30_000)  # the val split takes a while to write: Ctrl-C lands while it is written
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=snakemake_env())
    deadline = time.monotonic() + 300
    writing_val = False
    while not writing_val and proc.poll() is None and time.monotonic() < deadline:
        writing_val = any(p.name.startswith(("val.jsonl", ".val.jsonl")) and p != out / "nlvr2" / "val.jsonl"
                          for p in out.rglob("*"))
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert writing_val and proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert _prepared(out / "nlvr2") == older  # the older output, as a whole
    assert sorted(p.name for p in out.iterdir()) == ["nlvr2"]  # no temporary folder left

    subprocess.run(args, check=True, capture_output=True, env=snakemake_env(), timeout=300)  # the rerun
    newer = _prepared(out / "nlvr2")
    assert newer["summary"] == newer["lines"] == {"train": 30_000, "val": 30_000, "test": 3}
