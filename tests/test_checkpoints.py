"""Language models named by any hub spelling or by folder load their checkpoint's weights
(offline, from the HF cache of the stand-ins: real architectures, random weights)."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

import stand_ins
from vladapter.errors import ConfigError
from vladapter.models import lm_spec, load_tokenizer
from vladapter.core.model import build_model


@pytest.fixture()
def hub(stand_in_hf_home):
    with stand_ins.offline_hub(stand_in_hf_home) as home:
        yield home


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("name", ["t5-base", "google-t5/t5-base", "bart-base", "facebook/bart-base"])
def test_every_hub_spelling_loads_the_checkpoint_weights(hub, name):
    repo = stand_ins.T5 if "t5" in name else stand_ins.BART
    snap = stand_ins.snapshot(hub, repo)
    key = "shared.weight" if "t5" in name else "model.shared.weight"
    published = _weights(snap)[key]
    model = build_model(name, None, feat_dim=2048, n_vis_tokens=4, vocab_size=published.shape[0] - 200)
    shared = model.lm.get_input_embeddings().weight
    assert shared.dtype == torch.float32
    # the text rows are the checkpoint's (the 200 <vis_extra_id> rows are resized in)
    assert torch.equal(shared[: published.shape[0] - 200], published[: published.shape[0] - 200])
    assert len(load_tokenizer(lm_spec(name).checkpoint)) == published.shape[0] - (28 if "t5" in name else 0)


def test_a_local_folder_is_a_checkpoint(hub, tmp_path):
    folder = tmp_path / "models" / "my-bart"
    folder.parent.mkdir(parents=True)
    folder.symlink_to(stand_ins.snapshot(hub, stand_ins.BART), target_is_directory=True)
    spec = lm_spec(str(folder))
    assert (spec.family, spec.name, spec.checkpoint) == ("bart", "my-bart", str(folder))
    model = build_model(str(folder), None, feat_dim=512, n_vis_tokens=4, vocab_size=50265)
    assert torch.equal(model.lm.model.encoder.layers[0].fc1.weight, _weights(folder)["model.encoder.layers.0.fc1.weight"])
    # an explicit request for fresh weights is the only way around them
    fresh = build_model(str(folder), None, feat_dim=512, n_vis_tokens=4, vocab_size=50265, random_init=True)
    assert not torch.equal(fresh.lm.model.encoder.layers[0].fc1.weight, model.lm.model.encoder.layers[0].fc1.weight)


def test_unknown_checkpoint_says_where_it_looked(hub, tmp_path):
    with pytest.raises(ConfigError) as e:
        lm_spec("someone/t5-small-vl")
    assert "models--someone--t5-small-vl" in str(e.value) and str(hub / "hub") in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        lm_spec(str(tmp_path / "empty"))


def test_schema_takes_folders_and_every_spelling(repo, tmp_path):
    from snakemake.utils import validate

    config = yaml.safe_load((repo / "config" / "paper-image.yaml").read_text())
    config["lms"] = ["/models/bart-base", "google-t5/t5-base", "t5-base"]
    validate(config, str(repo / "workflow" / "schemas" / "config.schema.yaml"))


def test_pretrained_backbone_continues_on_features_of_another_size(tmp_path, caplog):
    """Image pre-training on RN101 grids (2048-d), then video runs on ViT-B/32 frames (512-d)."""
    from vladapter.models import build_vl_model

    pre = build_vl_model("tiny-bart", feat_dim=2048, n_vis_tokens=4, vocab_size=300)
    pre.save_pretrained(tmp_path / "pre")
    with caplog.at_level(logging.WARNING):
        model = build_model("tiny-bart", str(tmp_path / "pre"), feat_dim=512, n_vis_tokens=4, vocab_size=300)
    assert model.visual.feat[0].in_features == 512 and model.vl_config["feat_dim"] == 512
    assert torch.equal(model.lm.model.shared.weight, pre.lm.model.shared.weight)
    assert "visual embedding is re-initialised for 512-d features" in caplog.text
    out = model(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3), torch.randn(1, 4, 512),
                labels=torch.ones(1, 2, dtype=torch.long))
    assert torch.isfinite(out.loss)
    with pytest.raises(ConfigError, match="vocabulary"):
        build_model("tiny-bart", str(tmp_path / "pre"), feat_dim=512, n_vis_tokens=4, vocab_size=301)
