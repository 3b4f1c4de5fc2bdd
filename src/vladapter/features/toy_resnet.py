"""The toy CLIP's convolutional vision tower: a tiny ResNet, like CLIP's RN101 in miniature.

The paper's image features are CLIP RN101's last conv map before attention pooling. The
toy CLIP mirrors that: three stride-2 3x3 conv stages (64 px -> 32 -> 16 -> 8), a residual
block at 16x16 and at 8x8, BatchNorm + ReLU; the grid is the 8x8 map of the last stage
(``width`` channels), the pooled vector CLIP-RN-style attention pooling of it (one query,
the spatial mean, over the map plus learnt position embeddings), so the pooled vector
(the video tasks' per-frame feature) can tell where things are. A ViT of
the same cost trained on the toy pairs for the same time does not learn shape; this tower
does (docs/features.md: the probe, measured per variant).

Saved folders hold ``toy_clip.json`` (architecture + hyper-parameters), ``model.safetensors``
(``vision.*``, ``text.*``, ``logit_scale``), ``vocab.json`` and ``preprocessor_config.json``.
The text tower is Hugging Face's ``CLIPTextModelWithProjection`` with a small config.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError

ARCHITECTURE = "vladapter-toy-resnet-clip"
CONFIG_FILE = "toy_clip.json"


@dataclass(frozen=True)
class ToyResNetConfig:
    image_size: int = 64
    width: int = 128  # channels of the last stage = grid dim; the stages have width/4, /2, /1
    blocks: tuple[int, ...] = (0, 1, 1)  # residual blocks after each stage's stride-2 conv
    projection_dim: int = 128
    text: dict = field(default_factory=dict)  # CLIPTextConfig kwargs

    @property
    def grid(self) -> int:
        return self.image_size // 2 ** len(self.blocks)

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **asdict(self), "blocks": list(self.blocks)}

    @classmethod
    def from_dict(cls, d: dict) -> "ToyResNetConfig":
        if d.get("architecture") != ARCHITECTURE:
            raise ConfigError(f"{CONFIG_FILE}: architecture {d.get('architecture')!r} is not {ARCHITECTURE!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"architecture"}
        if unknown:
            raise ConfigError(f"{CONFIG_FILE}: unknown keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if k == "blocks" else v for k, v in d.items() if k in known})


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class _AttentionPool(nn.Module):
    """CLIP ResNet's pooling: the mean token attends over [mean; tokens] + position embeddings."""

    def __init__(self, n_tokens: int, width: int, out: int):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(n_tokens + 1, width) / width ** 0.5)
        self.attn = nn.MultiheadAttention(width, max(1, width // 32), batch_first=True)
        self.proj = nn.Linear(width, out, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = torch.cat([tokens.mean(1, keepdim=True), tokens], 1) + self.pos
        pooled, _ = self.attn(x[:, :1], x, x, need_weights=False)
        return self.proj(pooled[:, 0])


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class ToyResNetVision(nn.Module):
    """pixels ``(B, 3, S, S)`` -> grid ``(B, (S/8)^2, width)`` and pooled ``(B, projection_dim)``."""

    def __init__(self, config: ToyResNetConfig):
        super().__init__()
        n = len(config.blocks)
        if config.width % 2 ** (n - 1):
            raise ConfigError(f"toy ResNet width {config.width} must be divisible by {2 ** (n - 1)}")
        widths = [config.width // 2 ** (n - 1 - k) for k in range(n)]
        layers, c_in = [], 3
        for c, blocks in zip(widths, config.blocks):
            layers += [_down(c_in, c), *(_Residual(c) for _ in range(blocks))]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.pool = _AttentionPool(config.grid ** 2, config.width, config.projection_dim)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grid = self.body(pixel_values).flatten(2).transpose(1, 2)
        return grid, self.pool(grid)


class ToyResNetClip(nn.Module):
    """Conv vision tower + HF CLIP text tower + CLIP's learnt temperature and symmetric loss."""

    def __init__(self, config: ToyResNetConfig):
        super().__init__()
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        self.config = config
        self.vision = ToyResNetVision(config)
        self.text = CLIPTextModelWithProjection(CLIPTextConfig(**{**config.text, "projection_dim": config.projection_dim}))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                return_loss: bool = True) -> SimpleNamespace:
        image = F.normalize(self.vision(pixel_values)[1], dim=-1)
        text = F.normalize(self.text(input_ids=input_ids, attention_mask=attention_mask).text_embeds, dim=-1)
        logits = self.logit_scale.exp() * image @ text.T
        labels = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2 if return_loss else None
        return SimpleNamespace(loss=loss, logits_per_image=logits)

    def save(self, folder: Path) -> None:
        from vladapter.utils.io import save_safetensors

        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_safetensors(state, folder / "model.safetensors", metadata={"format": "pt", "architecture": ARCHITECTURE})
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1))


def is_toy_resnet(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def load_toy_resnet_vision(folder: str | Path) -> tuple[ToyResNetVision, ToyResNetConfig]:
    """The vision tower of a saved toy ResNet CLIP (safetensors only), in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = ToyResNetConfig.from_dict(json.loads((folder / CONFIG_FILE).read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ConfigError(f"{folder / CONFIG_FILE}: not a toy CLIP config ({e}); retrain it (vladapter "
                          "train-toy-clip)") from None
    weights = folder / "model.safetensors"
    try:
        state = load_file(weights)
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise ConfigError(f"{weights}: cannot read the toy CLIP weights ({e}); retrain it (vladapter "
                          "train-toy-clip)") from None
    vision = ToyResNetVision(config)
    prefix = "vision."
    try:
        vision.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    except RuntimeError as e:
        raise ConfigError(f"{weights}: weights do not fit {CONFIG_FILE} ({str(e).splitlines()[0]}); retrain it "
                          "(vladapter train-toy-clip)") from None
    return vision.eval(), config
