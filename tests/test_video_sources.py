"""The video datasets as released: frame folders, a user's own clips, missing clips, storage."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import yaml

from vladapter.features.frames import decode_frames, frame_indices, sample_frames, segment_indices
from vladapter.features.synthetic import frame_value, natural_frame, write_frame_folder, write_video
from workflow_helpers import copy_workflow, paper_video_from_videos, planned_jobs, snakemake_env


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vladapter.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_frame_folders_sample_like_the_video_they_came_from(tmp_path):
    """TVQA's release: <show>_frames/<vid_name>/00001.jpg at 3 fps. The same clip as a video
    file and as a frame folder gives the same frame indices, times and content."""
    write_video(tmp_path / "videos" / "s01e01_seg01_clip_00.mp4", n_frames=30, fps=3, width=64, height=48)
    write_frame_folder(tmp_path / "frames_hq" / "bbt_frames" / "s01e01_seg01_clip_00", n_frames=30)
    (tmp_path / "frames_hq" / "bbt_frames" / "empty_clip").mkdir()  # no JPEGs: not a clip
    out = {}
    for name, flags in [("folder", ["--videos", str(tmp_path / "frames_hq"), "--frames-fps", "3"]),
                        ("video", ["--videos", str(tmp_path / "videos")])]:
        out[name] = tmp_path / f"{name}.h5"
        proc = cli("sample-frames", "--dataset", "tvqa", *flags, "--output", str(out[name]), "--every", "1.5",
                   "--size", "32", "--workers", "1")
        assert proc.returncode == 0, proc.stderr
        assert "1 videos sampled (7 frames" in proc.stdout
    with h5py.File(out["video"]) as v, h5py.File(out["folder"]) as f:
        assert list(f) == ["s01e01_seg01_clip_00"] and f.attrs["fps"] == 3.0
        a, b = v["s01e01_seg01_clip_00"], f["s01e01_seg01_clip_00"]
        # one frame every 1.5 s at 3 fps: frames 2, 6, 11, ... (the middles of the intervals)
        idx = frame_indices(30, 3, "rate", 1.5)
        np.testing.assert_allclose(b.attrs["timestamps"], idx / 3, atol=1e-6)
        np.testing.assert_allclose(a.attrs["timestamps"], b.attrs["timestamps"], atol=1e-3)
        frames_a = decode_frames(a[()], a.attrs["offsets"])
        frames_b = decode_frames(b[()], b.attrs["offsets"])
        assert frames_a.shape == frames_b.shape == (len(idx), 32, 32, 3)
        expected = [frame_value(i) for i in idx]
        np.testing.assert_allclose(frames_b.reshape(len(idx), -1).mean(1), expected, atol=3)
        np.testing.assert_allclose(frames_a.reshape(len(idx), -1).mean(1), expected, atol=5)


def test_segments_take_the_grid_frames_inside_the_records_timestamps():
    grid = frame_indices(300, 10, "rate", 1.5)  # 30 s at 10 fps
    # [3, 7] s holds grid times 3.75, 5.25, 6.75; [20.1, 20.2] holds none: the nearest grid frame
    idx = segment_indices(300, 10, "rate", 1.5, [[3.0, 7.0], [20.1, 20.2]])
    assert idx.tolist() == [37, 52, 67, 202]
    assert set(idx) <= set(grid)
    # overlapping spans share frames; a record without a span takes the whole video
    assert segment_indices(300, 10, "rate", 1.5, [[3.0, 7.0], [5.0, 7.0]]).tolist() == [37, 52, 67]
    assert segment_indices(300, 10, "rate", 1.5, [[3.0, 7.0], None]).tolist() == grid.tolist()
    # count: N uniform frames inside each span
    assert segment_indices(300, 10, "count", 2, [[0.0, 4.0]]).tolist() == [10, 30]


def test_frames_are_stored_as_jpeg_at_a_tenth_of_the_raw_bytes(tmp_path):
    """224 x 224 frames of natural-image statistics (texture at every scale, JPEG's hardest
    case): stored as JPEG bytes (default quality), decoded back close to the sampled pixels,
    at < 15 % of the raw uint8 size."""
    from PIL import Image

    folder = tmp_path / "frames" / "clip"
    folder.mkdir(parents=True)
    for i in range(9):
        Image.fromarray(natural_frame(360, 640, seed=i)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    out = tmp_path / "f.h5"
    report = sample_frames({"clip": folder}, out, "count", 9, size=224, workers=1, fps=3, progress=False)
    assert report.frames == 9
    raw_bytes = 9 * 224 * 224 * 3
    assert report.bytes < 0.15 * raw_bytes
    with h5py.File(out) as f:
        ds = f["clip"]
        assert ds.dtype == np.uint8 and ds.ndim == 1 and f.attrs["encoding"] == "jpeg"
        frames = decode_frames(ds[()], ds.attrs["offsets"])
    from vladapter.features.preprocess import resize_and_crop

    with Image.open(folder / "00005.jpg") as image:
        reference = resize_and_crop(image.convert("RGB"), 224).astype(float)
    assert np.abs(frames[4].astype(float) - reference).mean() < 14  # texture: JPEG's worst case
    assert np.abs(frames[4].astype(float).mean() - reference.mean()) < 1


@pytest.fixture(scope="module")
def how2qa_world(tmp_path_factory):
    """The toy How2QA in the user's layout: clips in nested folders, one missing, one corrupt."""
    root = tmp_path_factory.mktemp("how2qa")
    from vladapter.data.toyworld import generate

    generate(root / "raw", seed=0, scale="smoke", workers=1, stats=False)
    videos = sorted((root / "raw" / "how2qa" / "videos").glob("*.mp4"))
    clips = root / "my_clips"
    for i, video in enumerate(videos):
        target = clips / ("batch1" if i % 2 else "batch2") / video.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(video, target)
    missing, corrupt = videos[0].stem, videos[1].stem
    (clips / "batch2" / f"{missing}.mp4").unlink()
    (clips / "batch1" / f"{corrupt}.mp4").write_bytes(b"\x00" * 100)
    return {"raw": root / "raw", "clips": clips, "missing": missing, "corrupt": corrupt, "n": len(videos)}


@pytest.mark.badinput
def test_missing_and_unreadable_clips_are_listed_and_their_records_dropped(how2qa_world, tmp_path):
    w = how2qa_world
    base = ["prepare", "--dataset", "how2qa", "--raw", str(w["raw"]), "--videos", str(w["clips"])]
    # default: stop above 1 % missing, naming the report
    stopped = cli(*base, "--out", str(tmp_path / "stop"))
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert "1 videos missing and 1 unreadable" in stopped.stderr and "videos_report.json" in stopped.stderr
    assert not (tmp_path / "stop" / "how2qa" / "train.jsonl").exists()
    # skip: listed with counts, records dropped, the user's folder untouched
    before = sorted(p.relative_to(w["clips"]) for p in w["clips"].rglob("*"))
    done = cli(*base, "--out", str(tmp_path / "p"), "--on-missing-video", "skip")
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(w["clips"]) for p in w["clips"].rglob("*")) == before
    report = json.loads((tmp_path / "p" / "how2qa" / "videos_report.json").read_text())
    assert (report["videos"], report["missing_count"], report["unreadable_count"]) == (w["n"], 1, 1)
    assert list(report["missing"]) == [w["missing"]] and list(report["unreadable"]) == [w["corrupt"]]
    kept = [json.loads(line) for split in ("train", "val", "test")
            for line in (tmp_path / "p" / "how2qa" / f"{split}.jsonl").read_text().splitlines()]
    assert kept and not {w["missing"], w["corrupt"]} & {r["video"] for r in kept}
    assert sum(report["records_dropped"].values()) > 0
    # a higher threshold under stop lets the run go on
    assert cli(*base, "--out", str(tmp_path / "q"), "--max-missing-videos", "0.5").returncode == 0


def test_sampling_takes_the_prepared_records_clips_inside_their_timestamps(how2qa_world, tmp_path):
    w = how2qa_world
    assert cli("prepare", "--dataset", "how2qa", "--raw", str(w["raw"]), "--videos", str(w["clips"]),
               "--out", str(tmp_path / "p"), "--on-missing-video", "skip").returncode == 0
    records = [json.loads(line) for split in ("train", "val", "test")
               for line in (tmp_path / "p" / "how2qa" / f"{split}.jsonl").read_text().splitlines()]
    out = tmp_path / "how2qa.h5"
    proc = cli("sample-frames", "--dataset", "how2qa", "--videos", str(w["clips"]), "--records",
               str(tmp_path / "p" / "how2qa"), "--output", str(out), "--size", "32", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    spans: dict = {}
    for r in records:
        spans.setdefault(r["video"], []).append(r["span"])
    with h5py.File(out) as f:
        assert sorted(f) == sorted(spans)  # only the records' clips, the dropped ones not
        for vid, vid_spans in spans.items():
            times = f[vid].attrs["timestamps"]
            # every sampled frame lies inside one of the clip's record spans (or is its fallback)
            inside = [any(s <= t <= e for s, e in vid_spans) for t in times]
            assert sum(inside) >= len(times) - len(vid_spans)


def test_paper_video_samples_the_clips_tvqa_and_tvc_share_once(tmp_path):
    work = copy_workflow(tmp_path)
    config = paper_video_from_videos(work)  # the paper's setup from videos, not VALUE's features
    assert yaml.safe_load((work / config).read_text())["data"]["videos"]["tvc"]["share"] == "tvqa"
    jobs = planned_jobs(work, "--configfile", config)
    # tvqa (with tvc's records), how2qa, yc2c: three samplings and three feature files
    assert jobs["sample_frames"] == jobs["extract_features"] == 3 and "import_features" not in jobs
    out = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/default", "-n", "-p",
                          "data/frames/tvqa.h5", "--configfile", config],
                         cwd=work, env=snakemake_env(), capture_output=True, text=True, timeout=300).stdout
    assert "--records data/prepared/tvqa data/prepared/tvc" in out and "--frames-fps 3" in out
