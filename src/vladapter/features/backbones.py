"""Frozen CLIP vision backbones: pixels -> (grid tokens, pooled vector).

``load_backbone(spec)`` takes
- a Hugging Face CLIP checkpoint, by hub id (``openai/clip-vit-base-patch32``,
  ``openai/clip-vit-base-patch16``) or local folder (``models/toyclip``): grid = the patch
  tokens of the last layer (CLS dropped) after CLIP's final LayerNorm, pooled = the
  projected image embedding (``image_embeds``);
- a toy ResNet CLIP folder (``toy_clip.json`` inside; ``vladapter train-toy-clip --vision resnet``):
  grid = its last conv map (8x8 for 64 px), pooled = its attention pooling;
- ``open_clip:RN101`` (any open_clip model name, ``open_clip:RN101@openai`` to name the
  weights): grid = the last conv map before attention pooling (7x7x2048 for RN101 at 224),
  pooled = the attention-pooled embedding. Needs the optional ``open_clip_torch`` package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vladapter.errors import ConfigError
from vladapter.utils.names import is_folder_name, name_key
from vladapter.features.preprocess import ClipPreprocess


@dataclass
class VisionBackbone:
    """A frozen encoder. ``encode(pixels (B,3,S,S))`` -> ``(grid (B, h*w, dim), pooled (B, pooled_dim))``."""

    name: str
    module: torch.nn.Module
    preprocess: ClipPreprocess
    grid: tuple[int, int]
    dim: int
    pooled_dim: int
    config: dict
    kind: str  # "hf", "toy_resnet" or "open_clip"

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "hf":
            out = self.module(pixel_values=pixels)
            grid = self.module.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
            return grid, out.image_embeds
        if self.kind == "toy_resnet":
            return self.module(pixels)
        visual = self.module
        x = pixels.to(next(visual.parameters()).dtype)
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))
        pooled = visual.attnpool(x)
        return x.flatten(2).transpose(1, 2), pooled


def load_backbone(spec: str, device: str | torch.device = "cpu") -> VisionBackbone:
    """Load the frozen backbone named by ``spec`` (see the module docstring) in eval mode."""
    if spec.startswith("open_clip:"):
        return _load_open_clip(spec, device)
    from vladapter.features.toy_resnet import is_toy_resnet

    if is_toy_resnet(spec):
        return _load_toy_resnet(spec, device)
    return _load_hf(spec, device)


def _load_toy_resnet(spec: str, device) -> VisionBackbone:
    from vladapter.features.toy_resnet import load_toy_resnet_vision

    vision, cfg = load_toy_resnet_vision(spec)
    vision.requires_grad_(False).to(device)
    return VisionBackbone(
        name=name_key(spec), module=vision, preprocess=ClipPreprocess(cfg.image_size), grid=(cfg.grid, cfg.grid),
        dim=cfg.width, pooled_dim=cfg.projection_dim, config={"source": spec, **cfg.to_dict()}, kind="toy_resnet")


def _load_hf(spec: str, device) -> VisionBackbone:
    from transformers import AutoConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    local = Path(spec)
    if not local.exists() and is_folder_name(spec):
        raise ConfigError(f"backbone folder {spec} not found; train it first (vladapter train-toy-clip) or name "
                          "a Hugging Face CLIP checkpoint such as openai/clip-vit-base-patch32")
    if local.is_dir() and not (local / "config.json").is_file():
        raise ConfigError(f"backbone folder {spec} holds no CLIP: it has neither config.json (a Hugging Face "
                          "CLIP) nor toy_clip.json (a toy CLIP); name a CLIP folder or checkpoint")
    try:
        config = AutoConfig.from_pretrained(spec)
        if config.model_type == "clip":  # a whole CLIPModel: keep its vision tower and projection
            config.vision_config.projection_dim = config.projection_dim
            config = config.vision_config
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the text tower's weights are "unexpected" here, by design
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(spec, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
    except OSError as e:
        raise ConfigError(f"cannot load CLIP backbone {spec!r} ({str(e).splitlines()[0]}); name a local folder "
                          "or a Hugging Face CLIP checkpoint available offline") from None
    model.eval().requires_grad_(False).to(device)
    cfg = model.config
    side = cfg.image_size // cfg.patch_size
    return VisionBackbone(
        name=name_key(spec), module=model, preprocess=ClipPreprocess(cfg.image_size),
        grid=(side, side), dim=cfg.hidden_size, pooled_dim=cfg.projection_dim,
        config={"source": spec, **{k: v for k, v in cfg.to_dict().items() if k != "transformers_version"}},
        kind="hf")


def _load_open_clip(spec: str, device) -> VisionBackbone:
    try:
        import open_clip
    except ImportError:
        raise ConfigError(f"backbone {spec} needs the optional open_clip package: pip install open_clip_torch "
                          "(or use an HF CLIP ViT such as openai/clip-vit-base-patch32)") from None
    arch, _, weights = spec.split(":", 1)[1].partition("@")
    model = open_clip.create_model(arch, pretrained=weights or "openai")
    visual = model.visual.eval().requires_grad_(False).to(device)
    if not all(hasattr(visual, a) for a in ("stem", "layer4", "attnpool")):
        raise ConfigError(f"{spec}: grid features are implemented for open_clip ResNets (RN50, RN101, ...) only")
    size = visual.image_size if isinstance(visual.image_size, int) else visual.image_size[0]
    with torch.inference_mode():
        grid, pooled = VisionBackbone(spec, visual, ClipPreprocess(size), (0, 0), 0, 0, {}, "open_clip").encode(
            torch.zeros(1, 3, size, size, device=device))
    side = int(round(grid.shape[1] ** 0.5))
    return VisionBackbone(
        name=name_key(spec), module=visual, preprocess=ClipPreprocess(size), grid=(side, side),
        dim=grid.shape[-1], pooled_dim=pooled.shape[-1],
        config={"source": spec, "architecture": arch, "pretrained": weights or "openai"}, kind="open_clip")
