"""VL pre-training: the backbone it writes is what `train --init` starts from."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import vl_world
from vladapter.models import VLModel
from vladapter.core.config import PretrainConfig, TrainConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return vl_world.build(tmp_path_factory.mktemp("world"), n_train=32, tasks=("vqa", "caption", "pretrain"))


def test_pretrain_writes_a_backbone_that_training_starts_from(world, tmp_path):
    from vladapter.train.pretrain import pretrain
    from vladapter.train.run import train

    torch.set_num_threads(1)
    common = dict(prepared=str(world["prepared"]), features=str(world["features"]), tokenizer=str(world["tokenizer"]))
    out = tmp_path / "pretrain" / "tiny-t5"
    info = pretrain(PretrainConfig(steps=24, batch_size=8, checkpoint_every=8, **common), out)
    assert info["objectives"] == {"span": 32, "prefix": 32, "itm": 32, "qa": 32}
    assert (out / "dvclive" / "metrics.json").is_file() and not (out / "checkpoints").exists()
    losses = (out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").read_text().split("\n")[1:]
    losses = [float(r.split("\t")[1]) for r in losses if r]
    assert losses[-1] < losses[0]  # the objectives are learnt

    backbone = VLModel.from_pretrained(out)  # a complete whole-model folder
    assert backbone.vl_config["feat_dim"] == vl_world.DIM
    weights = load_file(out / "model.safetensors")

    # full fine-tuning from the backbone with lr 0 leaves it exactly as pre-trained
    run = tmp_path / "models" / "tiny-t5" / "full_finetuning-zero"
    train(TrainConfig(method="full_finetuning", tasks=["vqa", "caption"], init=str(out), lr=0.0, weight_decay=0.0,
                      steps=2, batch_size=4, checkpoint_every=0, **common), run)
    trained = load_file(run / "adapter.safetensors")
    shared = [k for k in trained if k in weights]
    assert len(shared) > 10
    for k in shared:
        assert torch.equal(trained[k], weights[k]), k
    assert json.loads((run / "train.json").read_text())["config"]["init"] == str(out)


def test_video_pretraining_continues_a_backbone_on_downstream_video_data(tmp_path):
    """`pretrain --tasks <video tasks> --init <backbone>`: the section's `video` overrides
    apply, the backbone changes, and a video run starts from the result."""
    from vladapter.cli import main
    from vladapter.errors import ConfigError
    from vladapter.train.pretrain import pretrain
    from vladapter.train.run import train

    torch.set_num_threads(1)
    world = vl_world.build(tmp_path / "world", n_train=24, tasks=("vqa", "caption", "tvqa", "pretrain"))
    common = dict(prepared=str(world["prepared"]), features=str(world["features"]), tokenizer=str(world["tokenizer"]))
    image = tmp_path / "pretrain" / "tiny-t5"
    pretrain(PretrainConfig(steps=6, batch_size=8, checkpoint_every=0, **common), image)

    config = tmp_path / "config.yaml"
    config.write_text("pretrain:\n  steps: 50\n  batch_size: 8\n  lr: 1.0e-3\n"
                      "  video: {enabled: true, steps: 6, batch_size: 4}\n")
    video = tmp_path / "pretrain-video" / "tiny-t5"
    args = ["pretrain", "--config", str(config), "--tasks", "tvqa", "--init", str(image), "--out", str(video),
            "--n-video-frames", "8", "--checkpoint-every", "0", *[f"--{k}={v}" for k, v in common.items()]]
    assert main(args) == 0
    info = json.loads((video / "pretrain.json").read_text())
    assert info["steps"] == 6 and info["config"]["batch_size"] == 4  # the video overrides
    assert info["objectives"] == {"tvqa": 24} and info["config"]["init"] == str(image)
    before, after = load_file(image / "model.safetensors"), load_file(video / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained the whole backbone

    run = tmp_path / "models" / "tiny-t5" / "video-single_adapter"
    train(TrainConfig(method="single_adapter", tasks=["tvqa"], init=str(video), steps=2, batch_size=4,
                      n_video_frames=8, checkpoint_every=0, **common), run)
    assert json.loads((run / "train.json").read_text())["config"]["init"] == str(video)

    with pytest.raises(ConfigError, match="not both"):
        pretrain(PretrainConfig(tasks=["pretrain", "tvqa"], steps=2, **common), tmp_path / "mixed")


def test_matching_stage_trains_image_text_matching_alone_with_its_keys(world, tmp_path, capsys):
    """`pretrain --matching`: objectives [itm], the section's `matching` keys over the others
    and the command line over both; the objectives' stage then starts from its backbone."""
    from vladapter.cli import main

    torch.set_num_threads(1)
    common = [f"--{k}={world[k]}" for k in ("prepared", "features", "tokenizer")]
    config = tmp_path / "config.yaml"
    config.write_text("pretrain:\n  steps: 50\n  batch_size: 8\n  dropout: 0.1\n"
                      "  matching: {enabled: true, steps: 6, batch_size: 4, dropout: 0.0}\n")
    matching = tmp_path / "pretrain-matching" / "tiny-t5"
    args = ["pretrain", "--config", str(config), "--matching", "--out", str(matching), "--checkpoint-every", "0"]
    assert main(args + common) == 0
    info = json.loads((matching / "pretrain.json").read_text())
    assert info["objectives"] == {"itm": 32} and info["steps"] == 6
    assert info["config"]["batch_size"] == 4 and info["config"]["dropout"] == 0.0

    assert main(args + common + ["--steps", "3", "--replace"]) == 0  # the command line wins over `matching`
    assert json.loads((matching / "pretrain.json").read_text())["steps"] == 3

    full = tmp_path / "pretrain" / "tiny-t5"
    assert main(["pretrain", "--config", str(config), "--init", str(matching), "--out", str(full), "--steps", "2",
                 "--checkpoint-every", "0"] + common) == 0
    info = json.loads((full / "pretrain.json").read_text())
    assert info["objectives"] == {"span": 32, "prefix": 32, "itm": 32, "qa": 32}  # `matching` does not apply
    assert info["config"]["init"] == str(matching) and info["config"]["dropout"] == 0.1

    for wrong, named in ((["--tasks", "tvqa"], "not tasks tvqa:"), (["--objectives", "span", "itm"], "not objectives span itm:")):
        assert main(args + common + wrong) == 2
        assert named in capsys.readouterr().err

    # the stage may add the two-image objective: its records pair two of the split's images
    config.write_text("pretrain:\n  steps: 50\n  batch_size: 8\n"
                      "  matching: {enabled: true, objectives: [itm, pair], steps: 4}\n")
    assert main(args + common + ["--replace"]) == 0  # the finished stage of other settings: replaced
    assert json.loads((matching / "pretrain.json").read_text())["objectives"] == {"itm": 32, "pair": 32}
