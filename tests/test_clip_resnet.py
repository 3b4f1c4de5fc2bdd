"""The project's CLIP ResNet is RN101 as published: same weights layout, grid before pooling."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import stand_ins
from vladapter.errors import ConfigError
from vladapter.features.backbones import load_backbone
from vladapter.features.clip_resnet import AttentionPool, ClipResNet, ClipResNetConfig, load_clip_resnet


def test_state_dict_keys_and_shapes_are_the_published_rn101s():
    published = json.loads(stand_ins.RN101_SHAPES.read_text())["shapes"]
    with torch.device("meta"):
        ours = ClipResNet(ClipResNetConfig()).state_dict()
    assert {k: list(v.shape) for k, v in ours.items()} == published
    assert sum(v.numel() for k, v in ours.items() if not k.endswith("num_batches_tracked")) == 56_365_408


def test_attention_pool_is_clips_multi_head_attention():
    """The pooled vector: the mean token queries [mean; tokens] with CLIP's separate q/k/v and
    output projections (torch's reference multi-head attention on the same weights)."""
    torch.manual_seed(0)
    pool = AttentionPool(n_tokens=9, dim=64, heads=4, out=32).eval()
    tokens = torch.randn(2, 9, 64)
    x = torch.cat([tokens.mean(1, keepdim=True), tokens], 1).transpose(0, 1) + pool.positional_embedding[:, None]
    expected, _ = F.multi_head_attention_forward(
        x[:1], x, x, 64, 4, in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]), bias_k=None, bias_v=None,
        add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        training=False, need_weights=False, use_separate_proj_weight=True, q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight)
    torch.testing.assert_close(pool(tokens), expected[0], rtol=1e-5, atol=1e-5)


def test_rn101_from_the_hub_cache_a_file_and_a_weights_only_state_dict(stand_in_hf_home, tmp_path):
    with stand_ins.offline_hub(stand_in_hf_home):
        backbone = load_backbone("open_clip:RN101")  # @openai: open_clip's hub copy, from the cache
    assert (backbone.name, backbone.grid, backbone.dim, backbone.pooled_dim) == ("RN101", (7, 7), 2048, 512)
    assert backbone.preprocess.size == 224
    published = stand_ins.rn101_state_dict()
    assert torch.equal(backbone.module.layer3[22].conv2.weight, published["layer3.22.conv2.weight"])
    pixels = torch.randn(1, 3, 224, 224)
    grid, pooled = backbone.encode(pixels)
    assert grid.shape == (1, 49, 2048) and pooled.shape == (1, 512)
    # grid = the last conv map before attention pooling, row-major over the 7x7 positions
    torch.testing.assert_close(grid[0, 8], backbone.module.grid_map(pixels)[0, :, 1, 1])

    from_file = load_clip_resnet("RN101", str(stand_in_hf_home / stand_ins.RN101_FILE))
    assert torch.equal(from_file.attnpool.c_proj.weight, published["attnpool.c_proj.weight"])
    torch.save({f"visual.{k}": v.half() for k, v in published.items()}, tmp_path / "rn101.bin")
    from_pt = load_clip_resnet("RN101", str(tmp_path / "rn101.bin"))
    assert from_pt.conv1.weight.dtype == torch.float32
    with pytest.raises(ConfigError, match="not RN50"):
        load_clip_resnet("RN50", str(tmp_path / "rn101.bin"))


class _ClipStandIn(torch.nn.Module):
    """The clip package's model as its TorchScript files hold it: ``visual`` + a text part."""

    def __init__(self, config):
        super().__init__()
        self.visual = ClipResNet(config)
        self.token_embedding = torch.nn.Embedding(10, 8)
        self.logit_scale = torch.nn.Parameter(torch.ones([]) * 4.6)

    def forward(self, pixels):
        return self.visual(pixels)[1] * self.logit_scale.exp()


def test_the_clip_packages_torchscript_weights_load_without_running_them(tmp_path):
    """A TorchScript archive like the clip package's RN101.pt (fp16, traced) gives the visual tower's
    exact weights, read from the zip by a restricted unpickler (torch.jit.load is never called)."""
    torch.manual_seed(0)
    config = ClipResNetConfig(layers=(1, 1, 1, 1), width=8, output_dim=16, image_size=64)
    model = _ClipStandIn(config).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64)).half()
    path = tmp_path / "RN101.pt"
    torch.jit.save(traced, str(path))
    loaded = load_clip_resnet("RNtest", str(path))
    want = {k: v.half().float() for k, v in model.visual.state_dict().items() if "num_batches" not in k}
    got = {k: v for k, v in loaded.state_dict().items() if "num_batches" not in k}
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_a_torchscript_archive_that_needs_code_is_refused(tmp_path):
    import pickle
    import zipfile

    from vladapter.features.torchscript import read_torchscript_state

    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(tmp_path / "ok.pt"))
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    with zipfile.ZipFile(tmp_path / "ok.pt") as src, zipfile.ZipFile(tmp_path / "evil.pt", "w") as dst:
        for item in src.infolist():
            data = pickle.dumps({"weight": Evil()}, protocol=2) if item.filename.endswith("/data.pkl") else src.read(item)
            dst.writestr(item, data)
    with pytest.raises(ConfigError, match="not allowed"):
        read_torchscript_state(tmp_path / "evil.pt")
    assert not marker.exists()
