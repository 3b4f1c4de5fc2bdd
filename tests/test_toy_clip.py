"""The toy CLIP (vocabulary, Karpathy pairs, contrastive training, saved checkpoint) and the probe."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vladapter.errors import DataError
from vladapter.features.backbones import load_backbone
from vladapter.features.h5writer import ResumableH5Writer
from vladapter.features.probe import probe, probe_attribute
from vladapter.features.toy_clip import BOS, EOS, PAD, UNK, WordVocab, load_pairs, train_toy_clip

torch.set_num_threads(1)
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "white": (240, 240, 240)}


def test_vocab_encodes_bos_words_eos_pad():
    vocab = WordVocab.build(["A red square.", "a blue circle"])
    assert vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    ids, mask = vocab.encode(["A red CIRCLE!", "a green square"], max_len=6)
    red, circle, a = vocab.index["red"], vocab.index["circle"], vocab.index["a"]
    assert ids[0].tolist() == [BOS, a, red, circle, EOS, PAD]
    assert ids[1].tolist()[2] == UNK  # "green" is not in the vocabulary
    assert mask.tolist()[0] == [True] * 5 + [False]
    # too long: truncated, still ends with eos (HF CLIP pools the text at the first eos)
    assert vocab.encode(["a red blue circle square a"], max_len=4)[0][0].tolist()[-1] == EOS


def _toy_pairs(root, n=48, size=16):
    rng = np.random.default_rng(0)
    images, names = [], list(COLOURS)
    for i in range(n):
        colour = names[i % len(names)]
        pixels = np.clip(np.array(COLOURS[colour]) + rng.integers(-20, 20, (size, size, 3)), 0, 255)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(root / "images" / f"img{i}.png")
        images.append({"filepath": "images", "filename": f"img{i}.png", "split": "train" if i < n - 4 else "val",
                       "sentences": [{"raw": f"a {colour} picture ."}, {"raw": f"it is {colour}"}]})
    (root / "captions.json").write_text(json.dumps({"images": images}))
    return root / "captions.json"


def test_load_pairs_reads_karpathy_train_split(tmp_path):
    captions = _toy_pairs(tmp_path)
    pixels, caps, ids = load_pairs(captions, tmp_path, size=16)
    assert pixels.shape == (44, 16, 16, 3) and pixels.dtype == np.uint8
    assert caps[1] == ["a green picture .", "it is green"] and ids[1] == "img1"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"filename": "missing.png", "split": "train", "sentences": []}]}))
    with pytest.raises(DataError, match="missing.png"):
        load_pairs(bad, tmp_path, size=16)


def test_vit_training_lowers_the_contrastive_loss_and_saves_a_clip_checkpoint(tmp_path):
    pixels, caps, _ = load_pairs(_toy_pairs(tmp_path), tmp_path, size=16)
    out = tmp_path / "models" / "toyclip"
    log = train_toy_clip(pixels, caps, out, steps=40, batch_size=16, lr=3e-3, progress=False, vision="vit",
                         patch_size=8, width=32, layers=1, text_width=32, text_layers=1, projection_dim=16)
    first = np.mean([loss for _, loss in log["loss"][:1]])
    last = np.mean([loss for _, loss in log["loss"][-2:]])
    assert last < first - 0.3, log["loss"]
    assert {"model.safetensors", "config.json", "vocab.json", "train_log.json",
            "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    backbone = load_backbone(str(out))
    assert backbone.kind == "hf"
    assert backbone.preprocess.size == 16 and backbone.grid == (2, 2) and backbone.pooled_dim == 16


def test_resnet_training_lowers_the_loss_and_the_saved_tower_encodes_like_the_trained_one(tmp_path):
    pixels, caps, _ = load_pairs(_toy_pairs(tmp_path), tmp_path, size=16)
    out = tmp_path / "models" / "toyclip"
    log = train_toy_clip(pixels, caps, out, steps=40, batch_size=16, lr=3e-3, progress=False, vision="resnet",
                         width=16, blocks=(0, 1), text_width=32, text_layers=1, projection_dim=8)
    assert log["vision"] == "resnet"
    assert np.mean([loss for _, loss in log["loss"][-2:]]) < log["loss"][0][1] - 0.3, log["loss"]
    assert {"model.safetensors", "toy_clip.json", "vocab.json", "train_log.json",
            "preprocessor_config.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    backbone = load_backbone(str(out))
    assert backbone.kind == "toy_resnet" and backbone.name == "toyclip"
    assert backbone.grid == (4, 4) and backbone.dim == 16 and backbone.pooled_dim == 8  # 16 px / 2 stride-2 stages
    pixels_t = backbone.preprocess.normalise(pixels[:4])
    grid, pooled = backbone.encode(pixels_t)
    assert grid.shape == (4, 16, 16) and pooled.shape == (4, 8)
    # the grid is the last conv map (post-ReLU), the pooled vector its attention pooling
    assert (grid >= 0).all() and torch.allclose(pooled, backbone.module.pool(grid), atol=1e-5)
    # which uses position embeddings: moving the same content to other cells changes the pooled vector
    assert not torch.allclose(backbone.module.pool(grid.flip(1)), pooled, atol=1e-3)
    # BatchNorm in eval mode: an image's features do not depend on the rest of the batch
    assert torch.allclose(backbone.encode(pixels_t[:1])[0], grid[:1], atol=1e-5)
    # colours (what these captions describe) are told apart by the pooled vectors
    emb = torch.nn.functional.normalize(backbone.encode(backbone.preprocess.normalise(pixels[:8]))[1], dim=-1)
    sim = emb @ emb.T  # the test pairs cycle through 4 colours: image i and i + 4 share one
    assert all(sim[i, i + 4] > max(sim[i, j] for j in range(8) if j % 4 != i % 4) for i in range(4))


def test_a_broken_toy_resnet_folder_is_refused_with_the_fix(tmp_path):
    from vladapter.errors import ConfigError

    pixels, caps, _ = load_pairs(_toy_pairs(tmp_path), tmp_path, size=16)
    out = tmp_path / "toyclip"
    train_toy_clip(pixels, caps, out, steps=2, batch_size=8, progress=False, vision="resnet", width=16, blocks=(0, 1),
                   text_width=32, text_layers=1, projection_dim=8)
    (out / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="model.safetensors.*train-toy-clip"):
        load_backbone(str(out))
    (out / "toy_clip.json").write_text('{"architecture": "something-else"}')
    with pytest.raises(ConfigError, match="architecture"):
        load_backbone(str(out))


def _feature_file(path, n=200):
    """Pooled vectors that encode 'shape' (one-hot + noise) and nothing about 'colour'."""
    rng = np.random.default_rng(1)
    shapes = rng.integers(0, 3, n)
    attrs, writer = {}, ResumableH5Writer(path, {"backbone": "t", "kind": "grid", "grid": [2, 2], "dim": 6})
    for i in range(n):
        pooled = np.concatenate([np.eye(3)[shapes[i]] * 2, rng.normal(size=5)]).astype(np.float16)
        writer.add(f"im{i}", rng.normal(size=(4, 6)).astype(np.float16), extra={"pooled": pooled})
        shape = ["circle", "square", "cross"][shapes[i]]
        attrs[f"im{i}"] = {"shape": shape, "colour": ["red", "blue"][i % 2], "shapes": [{"shape": shape}]}
    writer.finish()
    return attrs


def test_probe_finds_what_the_features_carry(tmp_path):
    attrs = _feature_file(tmp_path / "f.h5")
    (tmp_path / "attrs.json").write_text(json.dumps(attrs))
    result = probe(tmp_path / "f.h5", tmp_path / "attrs.json", names=("shape", "colour"), views=("pooled", "grid"),
                   n_tokens=4)
    pooled = result["views"]["pooled"]
    assert pooled["shape"]["accuracy"] >= 0.95 and pooled["shape"]["n_classes"] == 3
    assert pooled["shape"]["chance"] < 0.5
    assert abs(pooled["colour"]["accuracy"] - 0.5) < 0.2  # noise: near chance
    assert result["views"]["grid"]["shape"]["accuracy"] < 0.7  # the grid here is pure noise
    assert result["n_images"] == 200
    presence = pooled["shape_presence"]
    assert sorted(presence["per_shape"]) == ["circle", "cross", "square"] and presence["accuracy"] >= 0.95
    # a random subset when there are more images than max_images: still finds the shape
    subset = probe(tmp_path / "f.h5", tmp_path / "attrs.json", names=("shape",), views=("pooled",), max_images=120)
    assert subset["n_images"] == 120 and subset["views"]["pooled"]["shape"]["accuracy"] >= 0.9


def test_probe_chance_is_the_majority_class():
    x = np.random.default_rng(0).normal(size=(100, 3))
    labels = ["a"] * 80 + ["b"] * 20
    scores = probe_attribute(x, labels, test_fraction=0.5, seed=0)
    assert 0.6 <= scores["chance"] <= 1.0 and scores["n_classes"] == 2


def test_cli_errors_name_the_missing_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vladapter.cli", "train-toy-clip",
                             "--captions", str(tmp_path / "none.json")], capture_output=True, text=True)
    assert result.returncode == 2 and "none.json" in result.stderr and "toyworld" in result.stderr
