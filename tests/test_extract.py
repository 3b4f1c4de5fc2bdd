"""CLIP feature extraction: preprocessing vs the CLIP spec, HDF5 layout, errors, kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from vladapter.errors import ConfigError, DataError
from vladapter.features.backbones import load_backbone
from vladapter.utils.names import name_key as backbone_name
from vladapter.features.extract import extract_features, list_images
from vladapter.features.frames import decode_frames, sample_frames
from vladapter.features.preprocess import ClipPreprocess
from vladapter.features.synthetic import write_image, write_video
from vladapter.features.toy_clip import tiny_clip_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny CLIPModel (32 px, 8 px patches -> 4x4 grid) saved like a real checkpoint."""
    from transformers import CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tinyclip"
    config = tiny_clip_config(40, image_size=32, patch_size=8, width=64, layers=2, text_width=32,
                              text_layers=1, projection_dim=24)
    CLIPModel(config).save_pretrained(path)
    return path


def _known_image(width: int, height: int) -> Image.Image:
    """A deterministic image with structure in every direction (gradients + a checkerboard)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), ((x // 7 + y // 5) % 2) * 255], -1)
    return Image.fromarray(rgb.astype(np.uint8))


@pytest.mark.parametrize("width,height,size", [(150, 100, 224), (100, 150, 224), (333, 250, 224), (90, 71, 64)])
def test_preprocessing_matches_clip_image_processor(width, height, size):
    from transformers import CLIPImageProcessor

    image = _known_image(width, height)
    reference = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    expected = reference(images=image, return_tensors="pt")["pixel_values"][0]
    ours = ClipPreprocess(size)(image)
    assert ours.shape == (3, size, size) and ours.dtype == torch.float32
    # the same PIL bicubic resize and crop: equal up to float rounding of the normalisation
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_preprocessing_follows_the_model_size(clip_dir):
    backbone = load_backbone(str(clip_dir))
    assert backbone.preprocess.size == 32 and backbone.grid == (4, 4)
    assert (backbone.dim, backbone.pooled_dim) == (64, 24)
    assert backbone_name(str(clip_dir)) == "tinyclip"
    assert backbone_name("openai/clip-vit-base-patch32") == "clip-vit-base-patch32"
    assert backbone_name("open_clip:RN101@openai") == "RN101"


def test_missing_backbone_errors(tmp_path):
    with pytest.raises(ConfigError, match="train-toy-clip"):
        load_backbone(str(tmp_path / "models" / "nothing"))
    with pytest.raises(ConfigError, match="RN101.safetensors"):
        load_backbone(f"open_clip:RN101@{tmp_path / 'RN101.safetensors'}")


def test_image_features_layout_and_values(tmp_path, clip_dir):
    for i in range(6):
        write_image(tmp_path / "images" / ("a" if i < 3 else "b") / f"img{i}.jpg", width=50 + i, height=40, seed=i)
    backbone = load_backbone(str(clip_dir))
    out = tmp_path / "src.tinyclip.h5"
    report = extract_features(backbone, out, images=list_images(tmp_path / "images"), batch_size=4, workers=1,
                              progress=False)
    assert (report.written, report.total) == (6, 6)
    with h5py.File(out) as f:
        assert f.attrs["backbone"] == "tinyclip" and f.attrs["kind"] == "grid"
        assert list(f.attrs["grid"]) == [4, 4] and f.attrs["dim"] == 64 and f.attrs["pooled_dim"] == 24
        assert json.loads(f.attrs["preprocessing"])["size"] == 32
        assert json.loads(f.attrs["config"])["patch_size"] == 8
        assert sorted(k for k in f if k != "pooled") == [f"img{i}" for i in range(6)]
        grid, pooled = f["img4"], f["pooled/img4"]
        assert grid.shape == (16, 64) and grid.dtype == np.float16 and grid.chunks == (16, 64)
        assert pooled.shape == (24,) and pooled.dtype == np.float16
        # the stored values are the model's outputs on the preprocessed image
        with Image.open(tmp_path / "images" / "b" / "img4.jpg") as image:
            g, p = backbone.encode(backbone.preprocess(image)[None])
        np.testing.assert_allclose(grid[()], g[0].numpy(), atol=2e-3)
        np.testing.assert_allclose(pooled[()], p[0].numpy(), atol=2e-3)


def test_frame_features_are_per_frame_pooled_vectors(tmp_path, clip_dir):
    videos = {f"v{i}": write_video(tmp_path / f"v{i}.mp4", n_frames=15 + 10 * i, fps=10) for i in range(3)}
    frames = tmp_path / "frames.h5"
    sample_frames(videos, frames, "rate", 1.0, size=32, workers=1, progress=False)
    backbone = load_backbone(str(clip_dir))
    out = tmp_path / "vid.tinyclip.h5"
    extract_features(backbone, out, frames=frames, batch_size=4, workers=1, progress=False)
    with h5py.File(out) as f, h5py.File(frames) as fr:
        assert f.attrs["kind"] == "frames" and f.attrs["dim"] == 24
        assert json.loads(f.attrs["frames"])["sampler"] == {"mode": "rate", "value": 1.0}
        for id_ in videos:
            n_frames = len(fr[id_].attrs["timestamps"])
            assert f[id_].shape == (n_frames, 24) and f[id_].dtype == np.float16
            np.testing.assert_array_equal(f[id_].attrs["timestamps"], fr[id_].attrs["timestamps"])
        pixels = decode_frames(fr["v2"][()], fr["v2"].attrs["offsets"])  # stored as JPEG
        _, p = backbone.encode(backbone.preprocess.normalise(pixels))
        np.testing.assert_allclose(f["v2"][()], p.numpy(), atol=2e-3)


def test_corrupt_image_is_named_or_skipped(tmp_path, clip_dir):
    for i in range(3):
        write_image(tmp_path / "images" / f"ok{i}.png", seed=i)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    backbone = load_backbone(str(clip_dir))
    out = tmp_path / "x.h5"
    with pytest.raises(DataError, match="broken.jpg"):
        extract_features(backbone, out, images=list_images(tmp_path / "images"), workers=0, progress=False)
    assert not out.exists()
    report = extract_features(backbone, out, images=list_images(tmp_path / "images"), workers=0,
                              on_error="skip", progress=False)
    assert [os.path.basename(p) for p, _ in report.skipped] == ["broken.jpg"]
    with h5py.File(out) as f:
        assert sorted(k for k in f if k != "pooled") == ["ok0", "ok1", "ok2"]


def test_kill_midway_then_rerun_finishes_without_redoing_ids(tmp_path, clip_dir):
    n = 400
    for i in range(n):
        write_image(tmp_path / "images" / f"im{i:03d}.jpg", width=160, height=120, seed=i)
    out = tmp_path / "features" / "toy.tinyclip.h5"
    parts = out.parent / f".{out.name}.parts"
    cmd = [sys.executable, "-m", "vladapter.cli", "extract-features", "--source", "toy",
           "--input", str(tmp_path / "images"), "--backbone", str(clip_dir), "--output", str(out),
           "--batch-size", "8", "--flush-every", "8", "--workers", "0", "--threads", "1", "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while not list(parts.glob("shard-*.h5")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert not out.exists(), "a killed run must not leave a file under the final name"
    done = set()
    for shard in parts.glob("shard-*.h5"):
        with h5py.File(shard) as f:
            done.update(k for k in f if k != "pooled")
    assert 0 < len(done) < n, f"the kill should land midway (done {len(done)} of {n})"

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - len(done)} extracted, {len(done)} kept from before, 0 skipped of {n}" in rerun.stdout
    assert not parts.exists()
    with h5py.File(out) as f:
        assert sorted(k for k in f if k != "pooled") == [f"im{i:03d}" for i in range(n)]
        assert len(f["pooled"]) == n
        kept = sorted(done)[0]
        # the kept ids are the killed run's values, and equal what a fresh extraction computes
        backbone = load_backbone(str(clip_dir))
        with Image.open(tmp_path / "images" / f"{kept}.jpg") as image:
            g, _ = backbone.encode(backbone.preprocess(image)[None])
        np.testing.assert_allclose(f[kept][()], g[0].numpy(), atol=2e-3)


@pytest.mark.faults
def test_shards_of_a_backbone_with_other_weights_are_never_merged(tmp_path, clip_dir, capsys):
    for i in range(6):
        write_image(tmp_path / "images" / f"im{i}.png", seed=i)
    (tmp_path / "images" / "zz-broken.jpg").write_bytes(b"not a jpeg")  # stops the first run after im0..im5
    old, new = load_backbone(str(clip_dir)), load_backbone(str(clip_dir))
    with torch.no_grad():  # retrained: same name, config and preprocessing, other weights
        next(new.module.parameters()).add_(0.5)
    out = tmp_path / "toy.tinyclip.h5"
    with pytest.raises(DataError):
        extract_features(old, out, images=list_images(tmp_path / "images"), workers=0, flush_every=2,
                         batch_size=2, progress=False)
    assert list((tmp_path / f".{out.name}.parts").glob("shard-*.h5")), "the first run left no shards"
    (tmp_path / "images" / "zz-broken.jpg").unlink()

    report = extract_features(new, out, images=list_images(tmp_path / "images"), workers=0, progress=False)
    assert (report.kept, report.written) == (0, 6)
    assert "discarding the unfinished run" in capsys.readouterr().out
    with h5py.File(out) as f, Image.open(tmp_path / "images" / "im0.png") as image:
        g, _ = new.encode(new.preprocess(image)[None])
        np.testing.assert_allclose(f["im0"][()], g[0].numpy(), atol=2e-3)


def test_toy_resnet_folder_extracts_its_last_conv_map(tmp_path):
    """The default toy CLIP (a tiny ResNet saved as toy_clip.json + safetensors) goes through
    the same extractor: grid = its last conv map, pooled = its attention pooling."""
    from vladapter.features.toy_clip import WordVocab, build_model, save_model

    torch.manual_seed(0)
    vocab = WordVocab.build(["a red square"])
    model, _ = build_model("resnet", len(vocab), image_size=32, width=16, blocks=(0, 1), text_width=32,
                           text_layers=1, projection_dim=8)
    save_model(model.eval(), vocab, tmp_path / "toyclip", {"steps": 0})
    for i in range(3):
        write_image(tmp_path / "images" / f"img{i}.jpg", width=40 + i, height=36, seed=i)
    backbone = load_backbone(str(tmp_path / "toyclip"))
    out = tmp_path / "src.toyclip.h5"
    extract_features(backbone, out, images=list_images(tmp_path / "images"), batch_size=2, workers=1, progress=False)
    with h5py.File(out) as f:
        assert f.attrs["backbone"] == "toyclip" and list(f.attrs["grid"]) == [8, 8]  # 32 px / 2 stride-2 stages
        assert f.attrs["dim"] == 16 and f.attrs["pooled_dim"] == 8
        assert json.loads(f.attrs["config"])["architecture"] == "vladapter-toy-resnet-clip"
        with Image.open(tmp_path / "images" / "img1.jpg") as image:
            g, p = backbone.encode(backbone.preprocess(image)[None])
            with torch.no_grad():
                saved = model.vision(backbone.preprocess(image)[None])[0]
        np.testing.assert_allclose(f["img1"][()], g[0].numpy(), atol=2e-3)
        np.testing.assert_allclose(f["pooled/img1"][()], p[0].numpy(), atol=2e-3)
        # the loaded tower is the saved one (not a fresh initialisation)
        torch.testing.assert_close(saved, g, atol=1e-5, rtol=0)


def test_signature_records_device_and_precision_so_a_gpu_run_is_not_resumed_on_cpu(tmp_path, clip_dir, capsys):
    """Features computed under a GPU's bf16 autocast differ from the CPU's fp32 ones: the
    file's signature says where and how they were computed, and shards an interrupted run
    left on another device are discarded, not merged."""
    import json

    from vladapter.features.h5writer import SIGNATURE, ResumableH5Writer

    for i in range(4):
        write_image(tmp_path / "images" / f"im{i}.png", seed=i)
    backbone = load_backbone(str(clip_dir))
    out = tmp_path / "src.tinyclip.h5"
    extract_features(backbone, out, images=list_images(tmp_path / "images"), workers=2, progress=False)
    with h5py.File(out) as f:
        assert (f.attrs["device"], f.attrs["precision"]) == ("cpu", "fp32")
        signature = json.loads(f.attrs[SIGNATURE])
    out.unlink()

    # what an interrupted run on a GPU leaves: shards with its own signature
    gpu = ResumableH5Writer(out, {**signature, "device": "cuda", "precision": "bf16"}, flush_every=1)
    for i in range(2):
        gpu.add(f"im{i}", np.zeros((16, 64), np.float16), extra={"pooled": np.zeros(24, np.float16)})
    gpu.flush()
    report = extract_features(backbone, out, images=list_images(tmp_path / "images"), workers=0, progress=False)
    assert (report.kept, report.written) == (0, 4)
    assert "discarding the unfinished run" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert np.abs(f["im0"][()]).max() > 0  # computed here, not the GPU run's zeros
