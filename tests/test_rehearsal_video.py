"""Rehearsal of the paper's video-text setup: config/paper-video.yaml through real Snakemake.

The real architectures (facebook/bart-base, t5-base, openai/clip-vit-base-patch32) with
random weights in a Hugging Face cache, offline; the data in the layouts the releases
unpack to, at miniature scale (the smoke toy world, rewritten). Two sources:

VALUE's release, as its DataRelease scripts download it (paper-video's default; no video file):

    data/raw/value/ann/{tvqa,how2qa,tvc,yc2c}/...jsonl           VALUE's annotation files and names
    data/raw/value/ann/{tv,how2,yc2}_subtitles.jsonl              VALUE's subtitle files
    data/raw/value/vis_features/{tv,how2,yc2}/clip-vit/<id>.npz   released features, one How2 file missing

The videos a user has (paper-video with its `data` section replaced, workflow_helpers):

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
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import stand_ins
from workflow_helpers import copy_workflow, paper_video_from_videos, snakemake, snakemake_env

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
    configs = ["--configfile", paper_video_from_videos(work), "rehearsal.yaml"]

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


# ------------------------------------------------------------------ VALUE's release


def value_release(raw: Path, root: Path) -> dict:
    """Write the smoke toy world's video datasets as VALUE's release under ``root`` (ann/ and
    vis_features/ as DataRelease's scripts write them), then delete every video; returns what
    the test checks against."""
    import av

    from vladapter.data.readers import Problems
    from vladapter.data.readers.how2qa import read_csv

    ann = root / "ann"
    tv_subs, facts = [], {}
    for dataset, prefix in (("tvqa", "tvqa_{}.jsonl"), ("tvc", "tvc_{}_release.jsonl")):
        for split in ("train", "val", "test_public"):
            rows = _jsonl(raw / dataset / prefix.format(split))
            if split == "test_public":  # labels withheld; VALUE's test_release adds test-private items
                key = "answer_idx" if dataset == "tvqa" else "descs"
                rows = [{k: v for k, v in r.items() if k != key} for r in rows]
                ids = "qid" if dataset == "tvqa" else "clip_id"
                private = [{**r, ids: r[ids] + 10**6} for r in rows[:1]]
                if dataset == "tvqa":
                    (ann / dataset).mkdir(parents=True, exist_ok=True)
                    _write_jsonl(ann / dataset / prefix.format(split), rows)  # beside test_release
                _write_jsonl(ann / dataset / prefix.format("test_release" if dataset == "tvqa" else "test"),
                             rows + private)
                facts[dataset] = sorted(r[ids] for r in rows + private)
            else:
                (ann / dataset).mkdir(parents=True, exist_ok=True)
                _write_jsonl(ann / dataset / prefix.format(split), rows)
        tv_subs += _jsonl(raw / dataset / f"{dataset}_subtitles.jsonl")
    _write_jsonl(ann / "tv_subtitles.jsonl", tv_subs)

    how2qa, qid = {}, 30000
    for split in ("train", "val", "test_public"):  # VALUE's jsonl: its own qids, its fixed a0..a3 order
        rows = []
        for r in read_csv(raw / "how2qa" / f"how2QA_{split}_release.csv", Problems(), split):
            qid += 1
            row = {"vid_name": r.video, "ts": f"{r.span[0]}-{r.span[1]}", "qid": qid, "q": r.text,
                   **{f"a{i}": c for i, c in enumerate(r.choices)}}
            rows.append(row if split == "test_public" else {**row, "answer_idx": r.answer_idx})
        (ann / "how2qa").mkdir(parents=True, exist_ok=True)
        _write_jsonl(ann / "how2qa" / f"how2qa_{split}_release.jsonl", rows)
        how2qa[split] = rows
    facts["how2qa"] = how2qa
    shutil.copy(raw / "how2qa" / "how2qa_subtitles.jsonl", ann / "how2_subtitles.jsonl")
    (ann / "yc2c").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):  # VALUE's YC2C: one clip per vid_name, no ts
        rows = [{k: v for k, v in r.items() if k != "ts" and (split != "test" or k != "descs")}
                for r in _jsonl(raw / "yc2c" / f"yc2c_{split}_release.jsonl")]
        _write_jsonl(ann / "yc2c" / f"yc2c_{split}_release.jsonl", rows)
    facts["yc2c"] = sorted(r["clip_id"] for r in _jsonl(ann / "yc2c" / "yc2c_test_release.jsonl"))
    shutil.copy(raw / "yc2c" / "yc2c_subtitles.jsonl", ann / "yc2_subtitles.jsonl")

    rng = np.random.default_rng(0)
    for datasets, short in ((("tvqa", "tvc"), "tv"), (("how2qa",), "how2"), (("yc2c",), "yc2")):
        folder = root / "vis_features" / short / "clip-vit"
        folder.mkdir(parents=True)
        for dataset in datasets:
            for video in sorted((raw / dataset / "videos").glob("*.mp4")):
                with av.open(str(video)) as container:
                    seconds = container.duration / av.time_base
                n = int(seconds // 1.5) + 1  # one CLIP ViT-B/32 vector every 1.5 s, as released
                np.savez(folder / f"{video.stem}.npz", features=rng.standard_normal((n, 512)).astype(np.float16))
            shutil.rmtree(raw / dataset / "videos")
    # one How2QA feature file missing: a video of training questions only (val and test keep theirs)
    held = {r["vid_name"] for split in ("val", "test_public") for r in how2qa[split]}
    facts["missing"] = sorted({r["vid_name"] for r in how2qa["train"]} - held)[-1]
    (root / "vis_features" / "how2" / "clip-vit" / f"{facts['missing']}.npz").unlink()
    for dataset in ("tvqa", "how2qa", "tvc", "yc2c"):  # only VALUE's release is left
        shutil.rmtree(raw / dataset)
    return facts


@pytest.mark.rehearsal
@pytest.mark.slow
@pytest.mark.timeout(2400)  # a dozen heavy jobs, each importing torch and loading a base-size model
def test_rehearsal_video_paper_config_from_value_release(tmp_path, hf_home, monkeypatch):
    """paper-video as shipped: VALUE's annotations, subtitles and released features, no video.
    Its scale also keeps one LM (the data path is what differs; the videos rehearsal runs both)."""
    from vladapter.data.toyworld import generate
    from vladapter.tasks.value import check_submission

    for key, value in stand_ins.offline_env(hf_home).items():
        monkeypatch.setenv(key, value)
    work = copy_workflow(tmp_path)
    generate(work / "data" / "raw", seed=0, scale="smoke", workers=1, stats=False)
    for name in ("coco", "vqav2", "gqa", "nlvr2", "pretrain"):
        shutil.rmtree(work / "data" / "raw" / name, ignore_errors=True)
    facts = value_release(work / "data" / "raw", work / "data" / "raw" / "value")
    # every test question predicted: the submissions must cover VALUE's test splits
    scale = {**SCALE, "lms": ["facebook/bart-base"], "evaluate": {**SCALE["evaluate"], "max_examples": 64}}
    (work / "rehearsal.yaml").write_text(yaml.safe_dump(scale))
    configs = ["--configfile", "config/paper-video.yaml", "rehearsal.yaml"]

    # a missing feature file is a missing video: the same report, the same policy (stop above 1 %)
    stopped = snakemake(work, "data/prepared/how2qa/summary.json", *configs, check=False)
    assert stopped.returncode != 0
    log = (work / "logs" / "prepare" / "how2qa.log").read_text()
    assert "1 videos missing" in log and "videos_report.json" in log and "on_missing_video: skip" in log
    skip = work / "skip.yaml"
    skip.write_text(yaml.safe_dump({"data": {"on_missing_video": "skip"}}))
    snakemake(work, *configs, str(skip), timeout=1500)

    report = json.loads((work / "data" / "prepared" / "how2qa" / "videos_report.json").read_text())
    assert report["layout"] == "released features" and list(report["missing"]) == [facts["missing"]]
    # no video anywhere: nothing sampled, nothing extracted; the released features converted
    assert not (work / "data" / "frames").exists() and not (work / "logs" / "extract_features").exists()
    assert sorted(p.name for p in (work / "data" / "features").glob("*.h5")) == [
        "how2qa.clip-vit-base-patch32.h5", "tvqa.clip-vit-base-patch32.h5", "yc2c.clip-vit-base-patch32.h5"]
    import h5py

    with h5py.File(work / "data" / "features" / "tvqa.clip-vit-base-patch32.h5") as f:
        tvc = {r["video"] for s in ("train", "val", "test")
               for r in _jsonl(work / "data" / "prepared" / "tvc" / f"{s}.jsonl")}
        assert tvc <= set(f) and f.attrs["kind"] == "frames" and f.attrs["dim"] == 512
        first = sorted(f)[0]
        assert f[first].attrs["timestamps"][1] == 1.5
    # How2QA's records: VALUE's qids and choice order, as in the files
    for split, name in (("val", "val"), ("test", "test_public")):
        rows = {str(r["qid"]): r for r in facts["how2qa"][name] if r["vid_name"] != facts["missing"]}
        prepared = _jsonl(work / "data" / "prepared" / "how2qa" / f"{split}.jsonl")
        assert [r["uid"] for r in prepared] == list(rows)
        assert all(r["choices"] == [rows[r["uid"]][f"a{i}"] for i in range(4)] for r in prepared)
        assert all(r["answer_idx"] == rows[r["uid"]].get("answer_idx") for r in prepared)

    for lm in ("bart-base",):
        [path] = (work / "metrics" / lm).glob("video-single_adapter*.json")
        metrics = json.loads(path.read_text())
        assert metrics["split"] == "val" and set(metrics["scores"]) == {"tvqa", "how2qa", "tvc", "yc2c"}
        seed = work / "predictions" / lm / path.stem / "seed-0"
        out = work / "value" / lm
        subprocess.run(["vladapter", "value-submission", "--predictions", str(seed), "--out", str(out)],
                       cwd=work, check=True, capture_output=True, text=True, env=snakemake_env())
        # VALUE's layout and file names, each file passing the check against VALUE's own ids
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*.json*")) == [
            "how2qa/how2qa_test_public_predictions.json", "how2qa/how2qa_val_predictions.json",
            "tvc/tvc_test_predictions.jsonl", "tvc/tvc_val_predictions.jsonl",
            "tvqa/tvqa_test_predictions.json", "tvqa/tvqa_val_predictions.json",
            "yc2c/yc2c_test_predictions.jsonl", "yc2c/yc2c_val_predictions.jsonl"]
        test_qids = [r["qid"] for r in facts["how2qa"]["test_public"] if r["vid_name"] != facts["missing"]]
        check_submission("how2qa", out / "how2qa/how2qa_test_public_predictions.json", test_qids)
        check_submission("tvqa", out / "tvqa/tvqa_test_predictions.json", facts["tvqa"])  # test_release
        check_submission("tvc", out / "tvc/tvc_test_predictions.jsonl", facts["tvc"])
        check_submission("yc2c", out / "yc2c/yc2c_test_predictions.jsonl", facts["yc2c"])
