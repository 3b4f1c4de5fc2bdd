"""One CPU arithmetic on every host (vladapter.utils.arithmetic), checked by simulating a
second host on this one.

The chain of the toy default, in miniature: the toy ResNet CLIP trained on the toy world's
JPEG images, its features extracted, a VL pre-training stage, a single-adapter training and
its evaluation. It runs twice through the `vladapter` entry point, each time in a fresh
process: once as this machine is, once as a host with fewer instruction sets would run it
(the libraries' own limits: ATen's AVX2 kernels, MKL's AVX2 instructions, oneDNN's AVX2
ISA, numpy without its AVX-512 loops and OpenBLAS's Haswell kernels, libjpeg-turbo without
SIMD). Pinned, both write the same bytes: checkpoints, features, metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vladapter.utils import arithmetic

# a host of fewer instruction sets, as each library's own limit (what the pin must override,
# or make irrelevant)
SMALLER_HOST = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "JSIMD_FORCENONE": "1",
}
STEPS = "3"


def chain(root: Path) -> list[list[str]]:
    """The commands of the chain, run in ``root`` (the shared toy world under root/data)."""
    common = ["--lm", "tiny-t5", "--tokenizer", "models/tokenizer", "--prepared", "data/prepared",
              "--features", "data/features", "--backbone", "toyclip-resnet", "--n-image-tokens", "4",
              "--batch-size", "8", "--steps", STEPS, "--log-every", "1", "--checkpoint-every", "0"]
    return [
        ["train-toy-clip", "--captions", "data/raw/pretrain/dataset_pretrain.json", "--vision", "resnet",
         "--output", "models/toyclip-resnet", "--steps", STEPS, "--batch-size", "32", "--threads", "2"],
        *[["extract-features", "--source", source, "--input", f"data/raw/{source}/images",
           "--backbone", "models/toyclip-resnet", "--output", f"data/features/{source}.toyclip-resnet.h5",
           "--device", "cpu", "--batch-size", "16", "--workers", "1", "--threads", "2"] for source in ("pretrain", "coco")],
        ["pretrain", *common, "--tasks", "pretrain", "--out", "models/pretrain/tiny-t5"],
        ["train", *common, "--tasks", "vqa", "caption", "--method", "single_adapter",
         "--init", "models/pretrain/tiny-t5", "--out", "models/tiny-t5/image-single_adapter"],
        ["evaluate", "--model", "models/tiny-t5/image-single_adapter", "--out", "metrics/tiny-t5/image-single_adapter.json",
         "--predictions", "predictions", "--device", "cpu", "--max-examples", "6", "--batch-size", "6"],
    ]


# every command of the chain in one process (torch and transformers load once), each through
# the entry point as a workflow job's would; stops at the first that fails
RUN_CHAIN = """
import json, sys
from vladapter.cli import main
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    if code:
        sys.exit(f"vladapter {argv[0]} exited {code}")
"""


def run_chain(world: Path, where: Path, env: dict[str, str], commands=None) -> dict[str, str]:
    """Copy the shared world to ``where``, run the chain there with ``env``; sha256 of every
    file the chain wrote (models, features, metrics, predictions)."""
    import shutil

    shutil.copytree(world, where)
    commands = chain(where) if commands is None else commands
    out = subprocess.run([sys.executable, "-c", RUN_CHAIN, json.dumps(commands)], cwd=where, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    written = [p for d in ("models", "data/features", "metrics", "predictions") if (where / d).exists()
               for p in sorted((where / d).rglob("*")) if p.is_file() and p.relative_to(where).parts[:2] != ("models", "tokenizer")]
    return {str(p.relative_to(where)): hashlib.sha256(p.read_bytes()).hexdigest() for p in written}


def host_env(level: str, smaller: bool) -> dict[str, str]:
    """This process's environment without any pin, as a host (``smaller``: the smaller one)
    whose vladapter runs at ``level``."""
    env = {k: v for k, v in os.environ.items()
           if k not in arithmetic.pinned_env("compatible") and k != "VLADAPTER_CPU_ARITHMETIC_PINNED"}
    env.update(SMALLER_HOST if smaller else {})
    env[arithmetic.ENV] = level
    env["OMP_NUM_THREADS"] = "1"  # the unpinned runs alike in threads: only the instruction sets differ
    return env


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The smoke-scale toy world, prepared (pre-training split, VQAv2, COCO) and tokenized."""
    root = tmp_path_factory.mktemp("world")
    commands = [["toyworld", "--out", "data/raw", "--scale", "smoke", "--seed", "0", "--workers", "1"],
                *[["prepare", "--dataset", d, "--raw", "data/raw", "--out", "data/prepared"]
                  for d in ("pretrain", "vqav2", "coco")],
                ["build-tokenizer", "--prepared", "data/prepared", "--out", "models/tokenizer"]]
    subprocess.run([sys.executable, "-c", RUN_CHAIN, json.dumps(commands)], cwd=root, env=host_env("avx2", smaller=False),
                   check=True, capture_output=True)
    return root


def cpu_can_show_the_difference(world: Path, tmp_path: Path) -> str | None:
    """None when the smaller host's limits change this machine's results unpinned (its first
    stage, the toy CLIP, differs); else why they cannot (e.g. a CPU without AVX-512)."""
    first = chain(world)[:1]
    native = run_chain(world, tmp_path / "native", host_env("native", smaller=False), first)
    smaller = run_chain(world, tmp_path / "native-smaller", host_env("native", smaller=True), first)
    if native != smaller:
        return None
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env=host_env("native", smaller=False), capture_output=True, text=True).stdout.strip()
    return (f"this CPU (torch's capability {probe}) computes the toy CLIP alike with and without the smaller "
            "host's limits, so it cannot show what pinning prevents")


def test_a_smaller_host_writes_the_same_checkpoints_and_metrics(world, tmp_path):
    # without the pin the two hosts differ here (else the test says why it cannot show it)
    reason = cpu_can_show_the_difference(world, tmp_path)
    if reason:
        pytest.skip(reason)
    here = run_chain(world, tmp_path / "here", host_env("avx2", smaller=False))
    there = run_chain(world, tmp_path / "there", host_env("avx2", smaller=True))
    assert any(p.endswith(".safetensors") for p in here) and any(p.startswith("metrics/") for p in here)
    assert sorted(here) == sorted(there)
    assert [p for p in here if here[p] != there[p]] == []


def test_pin_sets_the_level_and_a_child_at_another_level_takes_it_back():
    env = {"ATEN_CPU_CAPABILITY": "avx512", "OMP_NUM_THREADS": "8", arithmetic.ENV: "avx2"}
    assert arithmetic.pin(env) == "avx2"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "AVX2" and env["OMP_NUM_THREADS"] == "1"
    env[arithmetic.ENV] = "compatible"
    arithmetic.pin(env)
    assert env["MKL_CBWR"] == "COMPATIBLE"
    env[arithmetic.ENV] = "native"  # a research run under a pinned parent: its kernels are free again
    arithmetic.pin(env)
    assert "ATEN_CPU_CAPABILITY" not in env and "MKL_CBWR" not in env and "ONEDNN_MAX_CPU_ISA" not in env


def test_the_entry_point_pins_torch_before_it_loads_and_refuses_an_unknown_level(tmp_path):
    show = ("import sys; from vladapter import cli; sys.argv = ['vladapter', '--version']; cli.main();"
            "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())")
    env = host_env("avx2", smaller=False)
    env["OMP_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True)
    # AVX2 on every host that has it; DEFAULT below it (then the pin cannot hold: docs/workflow.md)
    assert out.stdout.split()[-2:] in (["AVX2", "1"], ["DEFAULT", "1"])
    env[arithmetic.ENV] = "fastest"
    bad = subprocess.run([sys.executable, "-m", "vladapter", "params"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "cpu_arithmetic" in bad.stderr and "Traceback" not in bad.stderr
