"""CLIP's ResNet image tower (OpenAI's "ModifiedResNet"), to read the published RN50/RN101 weights.

The paper's image features are CLIP RN101's last convolutional map, before attention
pooling: 7x7x2048 for a 224 px image. This module builds that tower from the weights
alone, with no open_clip or torchvision at run time. Its parameter names and shapes are
those of the published state dict (``visual.*`` in OpenAI's and open_clip's files), which
tests/test_clip_resnet.py checks against the published model definition.

The tower: a stem of three 3x3 convolutions (the first stride 2) and a 2x2 average pool;
four stages of bottleneck blocks (1x1, 3x3, 1x1 conv with BatchNorm, expansion 4) where a
stride-2 block downsamples by average pooling after its 3x3 conv (and before its 1x1
shortcut conv); then attention pooling: the mean token, with learnt position embeddings,
attends over the map (multi-head, ``width*32/64`` heads) and is projected to the
embedding size.

The architecture is read from the weights (stage depths from the block indices, width
from the first block, resolution from the position embeddings), as CLIP's loader does.
Weights come from a safetensors file, a state dict loaded with ``torch.load(weights_only=True)``,
the clip package's TorchScript ``RN101.pt`` (its tensors read without running its code:
``features.torchscript``),
a folder holding either (open_clip's hub layout: ``open_clip_model.safetensors`` or
``open_clip_pytorch_model.bin``), or a hub id in the local HF cache.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.features.torchscript import is_torchscript, read_torchscript_state

# open_clip's names for OpenAI's ResNet weights -> (stage depths, hub repository of the weights)
KNOWN = {
    "RN50": ((3, 4, 6, 3), "timm/resnet50_clip.openai"),
    "RN101": ((3, 4, 23, 3), "timm/resnet101_clip.openai"),
}
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors")
PREFIX = "visual."


@dataclass(frozen=True)
class ClipResNetConfig:
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)  # bottleneck blocks per stage (RN101)
    width: int = 64  # stem width; stage s has width * 2**s planes, x4 channels out
    output_dim: int = 512  # attention pool's projection (CLIP's embedding size)
    image_size: int = 224

    @property
    def grid_dim(self) -> int:
        return self.width * 32

    @property
    def heads(self) -> int:
        return self.width * 32 // 64

    @property
    def grid(self) -> int:
        return self.image_size // 32

    def to_dict(self) -> dict:
        return {**asdict(self), "layers": list(self.layers)}


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1):
        super().__init__()
        c_out = planes * self.expansion
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.conv3, self.bn3 = _conv_bn(planes, c_out, 1)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.downsample = None
        if stride > 1 or c_in != c_out:
            # the key names of the published weights: downsample.0 (conv), downsample.1 (BatchNorm);
            # the average pool comes first and has no weights
            self.downsample = nn.Sequential()
            self.downsample.add_module("-1", nn.AvgPool2d(stride))
            self.downsample.add_module("0", nn.Conv2d(c_in, c_out, 1, bias=False))
            self.downsample.add_module("1", nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.pool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class AttentionPool(nn.Module):
    """The mean of the map's tokens attends over [mean; tokens] (+ position embeddings)."""

    def __init__(self, n_tokens: int, dim: int, heads: int, out: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(n_tokens + 1, dim) / dim ** 0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out)
        self.heads = heads

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, N, dim)`` -> ``(B, out)``."""
        x = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + self.positional_embedding.to(tokens.dtype)
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # (B, L, d) -> (B, heads, L, d / heads)
            return t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q_proj(x[:, :1])), split(self.k_proj(x)), split(self.v_proj(x))
        pooled = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, d)
        return self.c_proj(pooled)


class ClipResNet(nn.Module):
    """pixels ``(B, 3, S, S)`` -> grid ``(B, (S/32)^2, width*32)`` and pooled ``(B, output_dim)``."""

    def __init__(self, config: ClipResNetConfig = ClipResNetConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.conv1, self.bn1 = _conv_bn(3, w // 2, 3, stride=2)
        self.conv2, self.bn2 = _conv_bn(w // 2, w // 2, 3)
        self.conv3, self.bn3 = _conv_bn(w // 2, w, 3)
        c_in = w
        for s, blocks in enumerate(config.layers):
            planes = w * 2 ** s
            stage = [Bottleneck(c_in, planes, stride=1 if s == 0 else 2)]
            stage += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*stage))
            c_in = planes * Bottleneck.expansion
        self.attnpool = AttentionPool(config.grid ** 2, config.grid_dim, config.heads, config.output_dim)

    def grid_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The last conv map ``(B, width*32, S/32, S/32)`` (before attention pooling)."""
        x = pixels.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = F.relu(bn(conv(x)))
        x = F.avg_pool2d(x, 2)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.grid_map(pixels).flatten(2).transpose(1, 2)
        return grid, self.attnpool(grid)


def config_from_state(state: dict[str, torch.Tensor]) -> ClipResNetConfig:
    """The architecture of a visual state dict (no prefix), read from its keys and shapes."""
    try:
        layers = tuple(len({m.group(1) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))})
                       for s in (1, 2, 3, 4))
        width = state["layer1.0.conv1.weight"].shape[0]
        n_pos = state["attnpool.positional_embedding"].shape[0]
        output_dim = state["attnpool.c_proj.weight"].shape[0]
    except KeyError as e:
        raise ConfigError(f"not the weights of a CLIP ResNet image tower (no {e.args[0]})") from None
    side = math.isqrt(n_pos - 1)
    if side * side + 1 != n_pos or not all(layers):
        raise ConfigError(f"not the weights of a CLIP ResNet image tower (stages {layers}, {n_pos} positions)")
    return ClipResNetConfig(layers=layers, width=width, output_dim=output_dim, image_size=side * 32)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The visual tower's tensors (``visual.`` prefix removed) of a weights file or folder."""
    path = Path(path)
    if path.is_dir():
        files = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
        if not files:
            raise ConfigError(f"{path} holds no CLIP weights (looked for {', '.join(WEIGHT_FILES)})")
        path = files[0]
    if not path.is_file():
        raise ConfigError(f"CLIP weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise ConfigError(f"{path}: cannot read safetensors ({e})") from None
    elif is_torchscript(path):  # the clip package's RN101.pt: its tensors, read without running its code
        state = read_torchscript_state(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many kinds for archives that are not plain state dicts
            raise ConfigError(
                f"{path}: not a plain state dict loadable with weights_only=True ({type(e).__name__}). Supported: "
                "a safetensors file, a plain state dict, the clip package's TorchScript RN101.pt, or an open_clip "
                "folder / hub copy (timm/resnet101_clip.openai). Convert where the file was made: python -c "
                "\"import torch; torch.save(MODEL.state_dict(), 'RN101_state.pt')\"") from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigError(f"{path}: expected a state dict, got {type(state).__name__}")
    if any(k.startswith(PREFIX) for k in state):
        state = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    return state


def weights_location(arch: str, weights: str) -> Path:
    """The file or folder of ``weights``: a path, ``openai`` (open_clip's hub copy of OpenAI's
    weights for ``arch``), or a hub id; hub ids come from the local HF cache (downloaded
    only when online)."""
    from vladapter.models.checkpoints import find_checkpoint, looks_like_path

    if looks_like_path(weights):
        return Path(weights).expanduser()
    repo = KNOWN[arch][1] if weights == "openai" and arch in KNOWN else weights
    for marker in WEIGHT_FILES:
        folder = find_checkpoint(repo, marker=marker, required=False)
        if folder is not None:
            return folder / marker
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, WEIGHT_FILES[0]))
    except Exception as e:  # offline, unknown repo, no network: one clear message
        from huggingface_hub import constants

        raise ConfigError(
            f"CLIP {arch} weights {weights!r} not found: no file/folder of that name, and no "
            f"{' or '.join(WEIGHT_FILES[:2])} of {repo} in the HF cache ({constants.HF_HUB_CACHE}) "
            f"({type(e).__name__}). Name a weights file (open_clip:{arch}@/path/RN101.safetensors) or put "
            f"{repo} in the cache") from None


def load_clip_resnet(arch: str, weights: str = "openai") -> ClipResNet:
    """CLIP ResNet ``arch`` (RN50, RN101, ...) with ``weights``, frozen, in eval mode, float32."""
    location = weights_location(arch, weights)
    state = read_state(location)
    config = config_from_state(state)
    if arch in KNOWN and config.layers != KNOWN[arch][0]:
        raise ConfigError(f"{location} holds a CLIP ResNet with stages {config.layers}, not {arch} "
                          f"{KNOWN[arch][0]}")
    model = ClipResNet(config)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConfigError(f"{location} does not fit CLIP {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.float().eval().requires_grad_(False)
