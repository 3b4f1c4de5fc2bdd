"""FeatureStore: pooling to N tokens, padding + mask, spans, errors, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from vladapter.errors import ConfigError, DataError
from vladapter.features.h5writer import ResumableH5Writer
from vladapter.features.store import FeatureStore

torch.set_num_threads(1)
RNG = np.random.default_rng(0)
GRIDS = {f"img{i}": RNG.normal(size=(49, 8)).astype(np.float16) for i in range(5)}
VIDEOS = {"short": RNG.normal(size=(3, 6)).astype(np.float16), "long": RNG.normal(size=(21, 6)).astype(np.float16)}


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "img.toy.h5"
    writer = ResumableH5Writer(path, {"backbone": "toy", "kind": "grid", "grid": [7, 7], "dim": 8, "pooled_dim": 4})
    for id_, grid in GRIDS.items():
        writer.add(id_, grid, extra={"pooled": grid[:4, 0]})
    writer.finish()
    return path


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "vid.toy.h5"
    writer = ResumableH5Writer(path, {"backbone": "toy", "kind": "frames", "dim": 6})
    for id_, frames in VIDEOS.items():
        writer.add(id_, frames, attrs={"timestamps": (np.arange(len(frames)) * 1.5 + 0.75).astype(np.float32)})
    writer.finish()
    return path


@pytest.mark.parametrize("n_tokens", [36, 16, 49, 4])
def test_image_grid_is_adaptive_max_pooled_like_torch(image_file, n_tokens):
    store = FeatureStore(image_file, n_tokens=n_tokens)
    out = store.image("img3")
    assert out.shape == (n_tokens, 8) and out.dtype == np.float32
    side = int(n_tokens ** 0.5)
    grid = torch.tensor(GRIDS["img3"].astype(np.float32)).T.reshape(1, 8, 7, 7)
    expected = torch.nn.functional.adaptive_max_pool2d(grid, side).reshape(8, -1).T.numpy()
    np.testing.assert_array_equal(out, expected)


def test_store_api(image_file):
    store = FeatureStore(image_file, n_tokens=16)
    assert store.ids() == sorted(GRIDS) and len(store) == 5 and store.dim == 8
    assert "img0" in store and "pooled" not in store and "nope" not in store
    assert store.attrs["grid"].tolist() == [7, 7]
    np.testing.assert_array_equal(store.pooled("img1"), GRIDS["img1"][:4, 0].astype(np.float32))
    with pytest.raises(DataError, match="nope"):
        store.image("nope")
    with pytest.raises(ConfigError, match="square"):
        FeatureStore(image_file, n_tokens=10)
    with pytest.raises(ConfigError, match="image grid features"):
        store.video("img0")
    with pytest.raises(DataError, match="extract-features"):
        FeatureStore(image_file.parent / "missing.h5")


def test_short_clip_is_zero_padded_with_mask(video_file):
    feats, mask = FeatureStore(video_file, n_tokens=8).video("short")
    assert feats.shape == (8, 6) and mask.tolist() == [True] * 3 + [False] * 5
    np.testing.assert_array_equal(feats[:3], VIDEOS["short"].astype(np.float32))
    assert not feats[3:].any()


def test_long_clip_is_adaptive_max_pooled_over_time(video_file):
    feats, mask = FeatureStore(video_file, n_tokens=8).video("long")
    assert mask.all()
    x = torch.tensor(VIDEOS["long"].astype(np.float32)).T[None]
    np.testing.assert_array_equal(feats, torch.nn.functional.adaptive_max_pool1d(x, 8)[0].T.numpy())


def test_span_selects_frames_by_timestamp(video_file):
    store = FeatureStore(video_file, n_tokens=8)
    # frames at 0.75, 2.25, 3.75, ... s: [2, 7] holds frames 1..4
    feats, mask = store.video("long", span=[2.0, 7.0])
    assert mask.sum() == 4
    np.testing.assert_array_equal(feats[:4], VIDEOS["long"][1:5].astype(np.float32))
    # a span between two samples takes the frame nearest its middle
    feats, mask = store.video("long", span=[2.3, 2.4])
    assert mask.sum() == 1
    np.testing.assert_array_equal(feats[0], VIDEOS["long"][1].astype(np.float32))


class _Reads(Dataset):
    def __init__(self, store):
        self.store, self.ids = store, sorted(GRIDS) * 4

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.store.image(self.ids[i])


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_reads_in_dataloader_workers(image_file, context):
    store = FeatureStore(image_file, n_tokens=16)
    store.image("img0")  # the parent has an open handle before the workers start
    loader = DataLoader(_Reads(store), batch_size=5, num_workers=2, multiprocessing_context=context)
    batches = torch.cat(list(loader))
    expected = np.stack([store.image(i) for i in _Reads(store).ids])
    np.testing.assert_array_equal(batches.numpy(), expected)
