"""Rehearsal of the paper's video-text setup: config/paper-video.yaml through real Snakemake.

The real architectures (facebook/bart-base, t5-base, openai/clip-vit-base-patch32) with
random weights in a Hugging Face cache, offline; the data in the layouts the releases
unpack to, at miniature scale (the smoke toy world, rewritten):

    data/raw/tvqa/frames_hq/<show>_frames/<vid_name>/00001.jpg   3-fps frame folders (TVQA and TVC clips)
    data/raw/tvqa/tvqa_test_public.jsonl                          no answer_idx, as released
    data/raw/tvc/tvc_test_public_release.jsonl                    no descs, as released
    data/raw/how2qa/videos/<batch>/<video_id>.mp4                 the user's clips, one missing
    data/raw/yc2c/youcookii_annotations_trainval.json             official annotations (no test split);
    data/raw/yc2c/videos/<video_id>.mp4                           the user's clips, one missing

Only the scale is overridden (steps, batch sizes, one method, few evaluated examples, no
GPU). The run first stops on the missing clips (the default policy), then, with
``data.on_missing_video: skip``, ends in the report and the test submissions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import stand_ins
from workflow_helpers import copy_workflow, snakemake

SCALE = {  # rehearsal scale: everything else is config/paper-video.yaml's
    "methods": {"image": [], "video": ["single_adapter"]},
    "features": {"batch_size": 16},
    "train": {"steps": 2, "epochs": None, "batch_size": 2, "num_workers": 0, "checkpoint_every": 0},
    "evaluate": {"max_examples": 2, "batch_size": 2, "num_beams": 1, "max_new_tokens": 4},
    "resources": {kind: {"threads": 1, "mem_mb": 2000, "runtime": 30, "gpu": 0}
                  for kind in ("light", "extract", "train")},
}
SHOWS = ["bbt", "castle", "friends", "grey", "house", "met"]


def _frames_at(video: Path, fps: float) -> list[np.ndarray]:
    """The video's frames resampled to ``fps`` (frame k at k / fps seconds), as released."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        rate = float(stream.average_rate)
    n = int(len(frames) / rate * fps)
    return [frames[min(len(frames) - 1, round(k / fps * rate))] for k in range(n)]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def released_layout(raw: Path) -> dict:
    """Rewrite the smoke toy world's video datasets into the released layouts; returns what
    the test checks against (test qids / clip ids, the missing clips)."""
    from PIL import Image

    frames_hq = raw / "tvqa" / "frames_hq"
    for i, dataset in enumerate(("tvqa", "tvc")):  # TVC's moments are on TVQA's clips
        for video in sorted((raw / dataset / "videos").glob("*.mp4")):
            folder = frames_hq / f"{SHOWS[i]}_frames" / video.stem
            folder.mkdir(parents=True)
            for k, frame in enumerate(_frames_at(video, 3.0)):
                Image.fromarray(frame).save(folder / f"{k + 1:05d}.jpg", quality=90)
        shutil.rmtree(raw / dataset / "videos")
    tvqa_test = raw / "tvqa" / "tvqa_test_public.jsonl"
    _write_jsonl(tvqa_test, [{k: v for k, v in r.items() if k != "answer_idx"} for r in _jsonl(tvqa_test)])
    tvc_test = raw / "tvc" / "tvc_test_public_release.jsonl"
    _write_jsonl(tvc_test, [{k: v for k, v in r.items() if k != "descs"} for r in _jsonl(tvc_test)])

    database = {}
    for split, subset in (("train", "training"), ("val", "validation")):
        for r in _jsonl(raw / "yc2c" / f"yc2c_{split}_release.jsonl"):
            entry = database.setdefault(r["vid_name"], {"duration": r.get("duration"), "subset": subset,
                                                        "recipe_type": "101", "annotations": []})
            entry["annotations"].append({"segment": r["ts"], "id": len(entry["annotations"]),
                                         "sentence": r["descs"][0]["desc"]})
    (raw / "yc2c" / "youcookii_annotations_trainval.json").write_text(json.dumps({"database": database}, indent=4))
    for split in ("train", "val", "test"):
        (raw / "yc2c" / f"yc2c_{split}_release.jsonl").unlink()

    missing = {}
    for dataset in ("how2qa", "yc2c"):
        videos = sorted((raw / dataset / "videos").glob("*.mp4"))
        for i, video in enumerate(videos):  # clips a user has, in folders of their own
            target = raw / dataset / "videos" / f"batch{i % 2}" / video.name
            target.parent.mkdir(exist_ok=True)
            video.rename(target)
        missing[dataset] = videos[-1].stem
        (raw / dataset / "videos" / f"batch{(len(videos) - 1) % 2}" / videos[-1].name).unlink()
    return {"tvqa_qids": sorted(str(r["qid"]) for r in _jsonl(tvqa_test)),
            "tvc_clips": sorted(r["clip_id"] for r in _jsonl(tvc_test)), "missing": missing}


@pytest.fixture(scope="module")
def hf_home():
    """The stand-in checkpoints, built once per machine (about a minute) and reused."""
    root = Path(os.environ.get("VLADAPTER_STAND_INS", Path(tempfile.gettempdir()) / "vladapter-stand-ins-video"))
    return stand_ins.cached_hf_home(root, repos=(stand_ins.BART, stand_ins.T5, stand_ins.CLIP_VIT_B32),
                                    aliases=(stand_ins.T5_LEGACY,))


@pytest.mark.rehearsal
@pytest.mark.slow
def test_rehearsal_video_paper_config_from_released_layouts(tmp_path, hf_home, monkeypatch):
    from vladapter.data.toyworld import generate

    for key, value in stand_ins.offline_env(hf_home).items():
        monkeypatch.setenv(key, value)
    work = copy_workflow(tmp_path)
    generate(work / "data" / "raw", seed=0, scale="smoke", workers=1, stats=False)
    for name in ("coco", "vqav2", "gqa", "nlvr2", "pretrain"):
        shutil.rmtree(work / "data" / "raw" / name, ignore_errors=True)
    facts = released_layout(work / "data" / "raw")
    (work / "rehearsal.yaml").write_text(yaml.safe_dump(SCALE))
    configs = ["--configfile", "config/paper-video.yaml", "rehearsal.yaml"]

    # the default policy: one of a handful of clips missing is far above 1 %: stop, naming the report
    stopped = snakemake(work, "--keep-going", "data/prepared/how2qa/summary.json", *configs, check=False)
    assert stopped.returncode != 0
    log = (work / "logs" / "prepare" / "how2qa.log").read_text()
    assert "1 videos missing" in log and "videos_report.json" in log and "on_missing_video: skip" in log

    skip = work / "skip.yaml"
    skip.write_text(yaml.safe_dump({"data": {"on_missing_video": "skip"}}))
    snakemake(work, *configs, str(skip), timeout=1500)

    for dataset in ("how2qa", "yc2c"):  # the missing clip is listed and its records are gone
        report = json.loads((work / "data" / "prepared" / dataset / "videos_report.json").read_text())
        assert list(report["missing"]) == [facts["missing"][dataset]] and report["missing_count"] == 1
        prepared = [r for s in ("train", "val", "test")
                    for r in _jsonl(work / "data" / "prepared" / dataset / f"{s}.jsonl")]
        assert prepared and facts["missing"][dataset] not in {r["video"] for r in prepared}
    # TVQA and TVC: one sampling of the shared frame folders, stored as JPEG
    assert not (work / "data" / "frames" / "tvc.h5").exists()
    import h5py

    tvc_videos = {r["video"] for s in ("train", "val", "test")
                  for r in _jsonl(work / "data" / "prepared" / "tvc" / f"{s}.jsonl")}
    assert {r["source"] for r in _jsonl(work / "data" / "prepared" / "tvc" / "train.jsonl")} == {"tvqa"}
    with h5py.File(work / "data" / "frames" / "tvqa.h5") as f:
        assert tvc_videos <= set(f) and f.attrs["encoding"] == "jpeg" and f.attrs["fps"] == 3.0

    for lm in ("bart-base", "t5-base"):
        [path] = (work / "metrics" / lm).glob("video-single_adapter*.json")  # -nopt: no VL pre-training
        metrics = json.loads(path.read_text())
        assert metrics["split"] == "val" and set(metrics["scores"]) == {"tvqa", "how2qa", "tvc", "yc2c"}
        assert metrics["submission_only"] == []
        test = work / "predictions" / lm / path.stem / "seed-0" / "test"  # the config's one seed
        assert set(metrics["seeds"]["0"]["submissions"]["test"]) == {"tvqa", "how2qa", "tvc", "yc2c"}
        tvqa = json.loads((test / "tvqa.json").read_text())  # {qid: answer index}, the label-less test
        assert sorted(tvqa) == facts["tvqa_qids"][:len(tvqa)] and len(tvqa) == min(2, len(facts["tvqa_qids"]))
        assert all(0 <= v < 5 for v in tvqa.values())
        tvc = _jsonl(test / "tvc.jsonl")
        assert {r["clip_id"] for r in tvc} <= set(facts["tvc_clips"]) and len(tvc) == 2
        assert all(set(r) == {"clip_id", "vid_name", "ts", "descs"} for r in tvc)
        assert (test / "yc2c.jsonl").read_text() == ""  # YouCook2 has no test split
        assert len(json.loads((test / "how2qa.json").read_text())) == 2
    table = (work / "results" / "table.md").read_text()
    assert "## Video-text tasks, bart-base" in table and "## Video-text tasks, t5-base" in table
    assert "single adapter" in table and "Split: val" in table
