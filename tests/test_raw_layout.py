"""Data the user already has, in the layouts the published archives unpack to, read where
it lies (never modified); the pre-training corpus built from those downloads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from published_raw import tree_state, write_published_raw
from vladapter.data.prepare import prepare
from vladapter.data.readers import read_dataset
from workflow_helpers import snakemake_env


@pytest.fixture(scope="module")
def user_data(tmp_path_factory):
    """The user's folders, each somewhere else (not under one root)."""
    base = tmp_path_factory.mktemp("user")
    write_published_raw(base / "datasets")
    return base / "datasets"


def _layout(user_data, tmp_path):
    from vladapter.data.layout import RawLayout

    return RawLayout(tmp_path / "raw", {d: user_data / d for d in ("coco", "vqav2", "gqa", "nlvr2")})


def test_published_layouts_read_as_unpacked(user_data, tmp_path):
    raw = _layout(user_data, tmp_path)
    nlvr2 = read_dataset("nlvr2", raw, check_media=True)  # train images nested in images/train/{0,1}/
    assert [len(nlvr2[s]) for s in ("train", "val", "test")] == [3, 3, 3]
    coco = read_dataset("coco", raw, check_media=True)  # train2014/ val2014/ unpacked in coco/
    assert [len(coco[s]) for s in ("train", "val", "test")] == [4, 3, 3]
    assert len(read_dataset("vqav2", raw, check_media=True)["train"]) == 4
    assert len(read_dataset("gqa", raw, check_media=True)["test"]) == 3


def test_pretraining_corpus_from_the_downloads(user_data, tmp_path):
    before = tree_state(user_data)
    summary = prepare("pretrain", _layout(user_data, tmp_path), tmp_path / "prepared")
    train = [json.loads(l) for l in (tmp_path / "prepared" / "pretrain" / "train.jsonl").read_text().splitlines()]
    kinds = {}
    for r in train:
        kinds.setdefault((r["meta"]["dataset"], r["meta"]["kind"], r["source"]), []).append(r)
    # Karpathy train + restval captions and their VQA questions, GQA train questions
    assert {k: len(v) for k, v in kinds.items()} == {("coco", "caption", "coco"): 4, ("vqav2", "qa", "coco"): 4,
                                                     ("gqa", "qa", "gqa"): 3}
    assert summary["counts"] == {"train": 11, "val": 6, "test": 0}
    karpathy = json.loads((user_data / "coco" / "dataset_coco.json").read_text())["images"]
    held_out = {i["filename"][:-4] for i in karpathy if i["split"] in ("val", "test")}
    assert not held_out & {img for r in train for img in r["images"]}
    assert all(r["task"] == "pretrain" and r["targets"] for r in train)
    assert tree_state(user_data) == before


def test_prepare_cli_takes_per_dataset_folders(user_data, tmp_path):
    args = [sys.executable, "-m", "vladapter.cli", "prepare", "--dataset", "nlvr2", "--raw", str(tmp_path / "raw"),
            "--path", f"nlvr2={user_data / 'nlvr2'}", "--out", str(tmp_path / "prepared")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train=3 val=3 test=3" in done.stdout
    bad = subprocess.run(args[:-4] + ["--path", "nlvr2", "--out", str(tmp_path / "p2")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "DATASET=FOLDER" in bad.stderr


def test_prepare_reads_published_layouts_under_a_plain_root(user_data, tmp_path):
    """The raw root as the downloads lay it out: NLVR2 nested train images, COCO unpacked
    in place, and the pre-training split built from the downloads (no pretrain/ folder)."""
    assert prepare("nlvr2", user_data, tmp_path / "prepared")["counts"]["train"] == 3
    assert prepare("pretrain", user_data, tmp_path / "prepared")["counts"]["train"] == 11


def _plan(repo, tmp_path, data: dict) -> str:
    import yaml

    config = yaml.safe_load((repo / "config" / "paper-image.yaml").read_text())
    config["data"] = data
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "work").mkdir(exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory",
                           str(tmp_path / "work"), "--configfile", str(tmp_path / "config.yaml"), "-n", "-p",
                           "--cores", "2"], env=snakemake_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_paper_dry_run_downloads_only_what_is_absent(user_data, tmp_path, repo):
    before = tree_state(user_data)
    plan = _plan(repo, tmp_path, {"raw_dir": str(user_data), "paths": {}})
    assert "vladapter download" not in plan  # everything is there
    assert plan.count("vladapter extract-features") == 3  # coco, gqa, nlvr2: pre-training reuses them
    assert "--source pretrain" not in plan and "vladapter pretrain" in plan
    # only NLVR2 named elsewhere, the rest absent under an empty raw_dir: those are downloaded there
    plan = _plan(repo, tmp_path, {"raw_dir": str(tmp_path / "raw"), "paths": {"nlvr2": str(user_data / "nlvr2")}})
    downloads = {line.split("vladapter download ")[1].split()[0] for line in plan.splitlines()
                 if "vladapter download " in line}
    assert downloads == {"coco", "vqav2", "gqa"}
    assert f"--path nlvr2={user_data / 'nlvr2'}" in plan
    assert tree_state(user_data) == before
