"""Frame sampling: indices for rate/count, decoded content, HDF5 layout, resume, bad videos."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from vladapter.errors import DataError
from vladapter.features.frames import decode_frames, frame_indices, read_video, sample_frames
from vladapter.features.synthetic import frame_value, write_video


def test_rate_indices_take_the_middle_of_each_interval():
    # 30 frames at 10 fps = 3 s; one every 1 s -> 0.5, 1.5, 2.5 s -> frames 5, 15, 25
    assert frame_indices(30, 10, "rate", 1.0).tolist() == [5, 15, 25]
    # paper rate: 1.5 s over 10 s at 30 fps -> 7 intervals (the last one runs past the end)
    idx = frame_indices(300, 30, "rate", 1.5)
    assert idx.tolist() == [22, 67, 112, 157, 202, 247, 292]
    # a clip shorter than one interval still gives one frame, inside the video
    assert frame_indices(4, 10, "rate", 1.5).tolist() == [3]


def test_count_indices_are_uniform_and_unique():
    assert frame_indices(30, 10, "count", 3).tolist() == [5, 15, 25]
    assert frame_indices(100, 25, "count", 4).tolist() == [12, 37, 62, 87]
    # fewer frames than asked: each frame once
    assert frame_indices(3, 10, "count", 8).tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", [("rate", 0), ("count", 0), ("every", 1)])
def test_bad_sampler_settings_raise(bad):
    with pytest.raises(ValueError):
        frame_indices(10, 10, *bad)


def test_read_video_returns_the_sampled_frames(tmp_path):
    video = write_video(tmp_path / "v.mp4", n_frames=30, fps=10, width=64, height=48)
    frames, times = read_video(video, "rate", 1.0, size=16)
    assert frames.shape == (3, 16, 16, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, [0.5, 1.5, 2.5], atol=1e-3)
    # frame i is grey level frame_value(i): frames 5, 15, 25 (H.264 keeps flat grey within a few levels)
    expected = [frame_value(i) for i in (5, 15, 25)]
    np.testing.assert_allclose(frames.reshape(3, -1).mean(1), expected, atol=4)


def test_read_video_handles_widths_decord_cannot_batch(tmp_path):
    # decord 0.6 get_batch fails on 48-px-wide videos; the fallback decodes them anyway
    video = write_video(tmp_path / "w48.mp4", n_frames=10, fps=10, width=48, height=48)
    frames, _ = read_video(video, "count", 2, size=32)
    assert frames.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(frames.reshape(2, -1).mean(1), [frame_value(2), frame_value(7)], atol=4)


def _videos(tmp_path, n=4):
    return {f"vid{i}": write_video(tmp_path / "videos" / f"vid{i}.mp4", n_frames=20 + 5 * i, fps=10)
            for i in range(n)}


def test_parallel_sampling_writes_the_bytes_of_sequential_sampling(tmp_path):
    # the first clip is the longest, so the workers finish the others first; results are
    # written in job order all the same (in completion order, shards held other ids from run
    # to run, and two runs' files differed)
    videos = {"a-long": write_video(tmp_path / "videos" / "a.mp4", n_frames=400, fps=10, width=128, height=96)}
    videos.update({f"b{i}": write_video(tmp_path / "videos" / f"b{i}.mp4", n_frames=10, fps=10) for i in range(5)})
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    sample_frames(videos, one, "rate", 0.5, size=64, workers=1, progress=False, flush_every=2)
    sample_frames(videos, two, "rate", 0.5, size=64, workers=2, progress=False, flush_every=2)
    assert one.read_bytes() == two.read_bytes()


def test_sample_frames_writes_the_documented_layout(tmp_path):
    videos = _videos(tmp_path)
    out = tmp_path / "frames" / "toy.h5"
    report = sample_frames(videos, out, "rate", 1.5, size=32, workers=2, progress=False)
    assert report.written == 4 and not report.skipped
    with h5py.File(out) as f:
        assert sorted(k for k in f if k in videos) == sorted(videos)
        assert json.loads(f.attrs["sampler"]) == {"mode": "rate", "value": 1.5}
        assert f.attrs["size"] == 32 and f.attrs["encoding"] == "jpeg"
        for i, id_ in enumerate(sorted(videos)):
            ds = f[id_]
            n_expected = len(frame_indices(20 + 5 * i, 10, "rate", 1.5))
            # JPEG files concatenated: offsets delimit the n frames
            assert ds.dtype == np.uint8 and ds.ndim == 1 and len(ds.attrs["offsets"]) == n_expected + 1
            assert decode_frames(ds[()], ds.attrs["offsets"]).shape == (n_expected, 32, 32, 3)
            assert ds.attrs["timestamps"].dtype == np.float32 and len(ds.attrs["timestamps"]) == n_expected
    assert not list(out.parent.glob(".*"))  # no shards or temp files left behind


def test_resume_keeps_done_videos_and_refuses_other_settings(tmp_path):
    videos = _videos(tmp_path, 3)
    out = tmp_path / "toy.h5"
    sample_frames(dict(list(videos.items())[:2]), out, "count", 4, size=16, workers=1, progress=False)
    report = sample_frames(videos, out, "count", 4, size=16, workers=1, progress=False)
    assert (report.written, report.kept) == (1, 2)
    with h5py.File(out) as f:
        assert sorted(f) == sorted(videos)
    from vladapter.errors import ConfigError
    with pytest.raises(ConfigError, match="--overwrite"):
        sample_frames(videos, out, "count", 5, size=16, workers=1, progress=False)


def test_corrupt_video_is_named_or_skipped(tmp_path):
    videos = _videos(tmp_path, 2)
    bad = tmp_path / "videos" / "broken.mp4"
    good_bytes = videos["vid0"].read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 3])  # truncated download
    videos["broken"] = bad
    out = tmp_path / "toy.h5"
    with pytest.raises(DataError, match="broken.mp4") as err:
        sample_frames(videos, out, workers=1, size=16, progress=False)
    assert "--on-error skip" in str(err.value)
    assert not out.exists()  # nothing under the final name
    report = sample_frames(videos, out, workers=2, size=16, on_error="skip", progress=False)
    assert [p for p, _ in report.skipped] == [str(bad)]
    assert report.written + report.kept == 2
    with h5py.File(out) as f:
        assert sorted(f) == ["vid0", "vid1"]


def test_cli_reports_counts_and_errors(tmp_path):
    write_video(tmp_path / "raw" / "videos" / "a.mp4", n_frames=15, fps=10)
    (tmp_path / "raw" / "videos" / "b.mp4").write_bytes(b"not a video")
    cmd = [sys.executable, "-m", "vladapter.cli", "sample-frames", "--dataset", "toy",
           "--videos", str(tmp_path / "raw" / "videos"), "--output", str(tmp_path / "f.h5"),
           "--count", "2", "--size", "16", "--workers", "1"]
    failed = subprocess.run(cmd, capture_output=True, text=True)
    assert failed.returncode == 2 and "b.mp4" in failed.stderr and "Traceback" not in failed.stderr
    ok = subprocess.run(cmd + ["--on-error", "skip"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # the failed run kept a.mp4 for the rerun
    assert "0 videos sampled (0 frames), 1 kept from before, 1 skipped of 2" in ok.stdout
