"""DDP: `torchrun --nproc_per_node 2` (gloo, CPU) ends with the weights of one process, for
every seed of a --seeds run (one process group for all), and a stop signal to the whole
process group (SLURM's time-limit warning) checkpoints and exits 75 through torchrun."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vl_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return vl_world.build(tmp_path_factory.mktemp("world"), n_train=24)


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
# the workflow's launcher (vladapter.train.launch), with `-m vladapter.cli` for the installed script
TORCHRUN = [sys.executable, "-m", "vladapter.train.launch", "torchrun", "--standalone", "--nproc_per_node", "2",
            "-m", "vladapter.cli"]


def train_args(world, *extra):
    return ["train", "--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--tasks", "vqa,nlvr,caption,tvqa", "--n-video-frames", "8",
            "--batch-size", "6", "--lr", "1e-3", "--dropout", "0", *extra]


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch_for_every_seed(world, tmp_path):
    """Two seeds in one torchrun: the process group is joined once for both (re-created per
    seed, the second round found the first one's keys in torchrun's store: a hang or
    "Connection refused")."""
    args = train_args(world, "--steps", "8", "--log-every", "1", "--checkpoint-every", "0", "--seeds", "0,1")
    single, double = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "vladapter.cli", *args, "--out", str(single)],
                   check=True, env=ENV, capture_output=True)
    run = subprocess.run([*TORCHRUN, *args, "--out", str(double)], env=ENV, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    for seed in ("seed-0", "seed-1"):
        info = (double / seed / "train.json").read_text()
        assert '"world_size": 2' in info
        assert_same_training(single / seed, double / seed, steps=8)
    first = load_file(double / "seed-0" / "adapter.safetensors")
    second = load_file(double / "seed-1" / "adapter.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # two seeds, two runs


def test_a_stop_signal_to_the_process_group_checkpoints_and_torchrun_exits_75(world, tmp_path):
    """SLURM's --signal=TERM@... reaches every process of the job step: torchrun, both ranks
    and their 2 loader workers each. The workers carry on, the ranks agree to stop at the
    next step (no logging or checkpoint step comes before the end here), checkpoint, and
    torchrun exits 75; a rerun with --resume continues from the checkpoint."""
    args = train_args(world, "--steps", "30", "--log-every", "100", "--checkpoint-every", "0", "--num-workers", "2",
                      "--out", str(tmp_path / "run"))
    proc = subprocess.Popen([*TORCHRUN, *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group, as a job step
    err = bytearray()

    def read():  # torchrun's and the ranks' stderr as it comes (rank 0's progress bar)
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not re.search(rb"\| +[1-9]\d*/30 ", bytes(err)) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be signalled: " + err.decode(errors="replace")[-3000:]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    text = err.decode(errors="replace")
    assert proc.returncode == 75, text[-3000:]
    stopped = re.search(r"stopped at step (\d+) of 30 on SIGTERM", text)
    assert stopped and int(stopped.group(1)) < 30, text[-3000:]
    assert "DataLoader worker" not in text, text[-3000:]
    assert not (tmp_path / "run" / "train.json").exists()

    resumed = subprocess.run([*TORCHRUN, *args, "--resume"], env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from step {stopped.group(1)} of 30" in resumed.stdout
    assert '"steps": 30' in (tmp_path / "run" / "train.json").read_text()


def assert_same_training(single: Path, double: Path, steps: int) -> None:
    """The run in ``double`` (2 processes) trained as the one in ``single`` (1 process)."""
    # the same gradients: the logged pre-clipping gradient norm of every step agrees
    # (Adam's update hides the loss scale, the norm does not)
    norms = [read_tsv(run / "dvclive" / "plots" / "metrics" / "train" / "grad_norm.tsv") for run in (single, double)]
    assert len(norms[0]) == steps
    np.testing.assert_allclose(norms[1], norms[0], rtol=1e-5)
    # and the same weights, up to float summation order amplified by Adam over the steps
    a, b = load_file(single / "adapter.safetensors"), load_file(double / "adapter.safetensors")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5, msg=k)


def read_tsv(path: Path) -> list[float]:
    rows = path.read_text().split("\n")[1:]
    return [float(r.split("\t")[-1]) for r in rows if r.strip()]


RESUME_POINT = """
import sys, time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from vladapter.train.dist import DistInfo
from vladapter.train.loop import _resume_point

rank, work, store = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2, timeout=timedelta(seconds=20))
if rank == 1:
    time.sleep(2)  # a slower rank: rank 0 has looked at the checkpoint long before
found = _resume_point(work, {"run": "this one"}, DistInfo(rank, 2))
total = torch.tensor([rank + 1])
dist.all_reduce(total)  # the run's next collective (DDP's first broadcast)
print(f"rank {rank}: {found} {int(total)}", flush=True)
dist.destroy_process_group()
"""


def test_a_stale_checkpoint_is_left_by_every_rank_together_when_one_is_late(tmp_path):
    """--resume finds a checkpoint another run wrote: rank 0 decides, every rank hears it, and
    it is deleted only when all have (a late rank found it deleted already, skipped the
    barrier rank 0 waited at, and the ranks' collectives went out of step)."""
    from vladapter.train import checkpoint as ckpt
    from vladapter.train.optim import build_optimizer, build_scheduler

    work = tmp_path / ".run.partial"
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, 1e-3, 0.0, 1e-8)
    ckpt.save_checkpoint(work, 4, 4, model, optimizer, build_scheduler(optimizer, 8, 0.1), [torch.get_rng_state()],
                         extra={"producer": {"run": "another one"}})
    procs = [subprocess.Popen([sys.executable, "-c", RESUME_POINT, str(rank), str(work), str(tmp_path / "store")],
                              env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = []
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            proc.kill()
            outs.append(proc.communicate())
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outs]
    assert outs[0][0].splitlines()[-1] == "rank 0: None 3" and outs[1][0].splitlines()[-1] == "rank 1: None 3"
    assert "not resuming from" in outs[0][0] and "not resuming" not in outs[1][0]
    assert ckpt.list_checkpoints(work) == []
