"""Rehearsal of config/paper-image.yaml as shipped, at miniature scale.

Real Snakemake on the paper's image-text config with only its scale overridden (a few
records per split in the published layouts, 2 steps per run, one method with and
without VL pre-training): VL-BART and
VL-T5 at bart-base / t5-base size and CLIP RN101, real architectures with random weights
in a temporary HF cache, offline; bart-base is named by a checkpoint folder, as a user
with a folder of checkpoints would, t5-base by its legacy hub name. The data lies in the user's own folder, found through
``data.raw_dir``; nothing is downloaded and the folder is left as it was. The run goes
through the pre-training split, RN101 grid extraction, VL pre-training, training,
evaluation and the report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

import stand_ins
from published_raw import tree_state, write_published_raw

REPO = Path(__file__).resolve().parents[1]
METHODS = ["single_adapter"]  # other methods on the real architectures: test_petl, test_params
COMPARE = ["single_adapter"]  # -nopt: from plain bart-base / t5-base


def scaled_down(config: dict, raw_dir: Path, checkpoints: dict[str, Path]) -> dict:
    """paper-image.yaml with only its scale changed, and where the data and checkpoints are
    (an LM of the config named by a local folder instead: ``checkpoints``)."""
    config["data"] = {"raw_dir": str(raw_dir), "paths": {}}
    config["lms"] = [str(checkpoints.get(lm, lm)) for lm in config["lms"]]
    config["features"].update(batch_size=4)
    config["methods"]["image"] = METHODS
    config["pretrain"].update(compare=COMPARE, steps=2, batch_size=2, num_workers=0, checkpoint_every=0)
    config["train"].update(steps=2, batch_size=2, num_workers=0, checkpoint_every=0)
    config["evaluate"].update(batch_size=4, max_new_tokens=4)
    light = {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
    config["resources"] = {"light": light, "extract": {**light, "threads": 2}, "train": {**light, "threads": 2}}
    return config


@pytest.mark.rehearsal
@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~24 heavy jobs, each importing torch and loading a base-size model
def test_paper_image_rehearsal_on_both_lms(stand_in_hf_home, tmp_path):
    raw_dir = write_published_raw(tmp_path / "datasets", per_split=2)
    before = tree_state(raw_dir)
    # as a new user would: bart-base from a folder of checkpoints, t5-base by name from the HF
    # cache (which holds it as google-t5/t5-base only)
    folder = tmp_path / "checkpoints" / "bart-base"
    folder.parent.mkdir()
    folder.symlink_to(stand_ins.snapshot(stand_in_hf_home, stand_ins.BART), target_is_directory=True)
    config = scaled_down(yaml.safe_load((REPO / "config" / "paper-image.yaml").read_text()), raw_dir,
                         {stand_ins.BART: folder})
    assert config["lms"] == [str(folder), "t5-base"]
    (tmp_path / "rehearsal.yaml").write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, **stand_ins.offline_env(stand_in_hf_home), "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(tmp_path / "rehearsal.yaml"), "--cores", "2"]
    plan = subprocess.run(cmd + ["-n", "--quiet", "rules"], env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "download" not in plan.stdout and "pretrain " in plan.stdout.replace("\n", " ") + " "

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2300)
    logs = "".join(f"\n== {p}\n{p.read_text()[-1500:]}" for p in sorted((work / "logs").rglob("*.log")))
    assert done.returncode == 0, done.stderr[-4000:] + logs[-8000:]

    # the pre-training split was prepared from the downloads and trained on their features
    summary = json.loads((work / "data/prepared/pretrain/summary.json").read_text())
    assert summary["counts"]["train"] == 3 + 3 + 2  # Karpathy train+restval captions, their VQA, GQA train
    assert not list((work / "data/features").glob("pretrain.*"))
    with h5py.File(work / "data/features/coco.RN101.h5") as f:  # RN101's 7x7x2048 grid, before pooling
        assert list(f.attrs["grid"]) == [7, 7] and int(f.attrs["dim"]) == 2048
        assert f["COCO_train2014_000000001000"].shape == (49, 2048)
    for lm in ("bart-base", "t5-base"):
        assert (work / f"models/pretrain/{lm}/model.safetensors").is_file()
        for run in [f"image-{m}" for m in METHODS] + [f"image-{m}-nopt" for m in COMPARE]:
            metrics = json.loads((work / f"metrics/{lm}/{run}.json").read_text())
            assert metrics, (lm, run)
    table = (work / "results/table.md").read_text()
    assert "bart-base" in table and "t5-base" in table
    assert tree_state(raw_dir) == before  # the user's data folder is untouched
    assert not (work / "logs" / "download").exists()
