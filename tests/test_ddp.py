"""DDP: `torchrun --nproc_per_node 2` (gloo, CPU) ends with the weights of one process."""

from __future__ import annotations

import os
import subprocess
import sys
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


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(world, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    args = ["train", "--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--tasks", "vqa,nlvr,caption,tvqa", "--n-video-frames", "8",
            "--batch-size", "6", "--steps", "8", "--log-every", "1", "--lr", "1e-3", "--dropout", "0", "--checkpoint-every", "0"]
    single, double = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "vladapter.cli", *args, "--out", str(single)],
                   check=True, env=env, capture_output=True)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "vladapter.cli", *args, "--out", str(double)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]

    info = (double / "train.json").read_text()
    assert '"world_size": 2' in info
    assert_same_training(single, double, steps=8)


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
