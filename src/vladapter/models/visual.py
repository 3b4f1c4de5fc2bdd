"""The visual embedding of VL-T5 / VL-BART.

Pooling grid features to N tokens (7x7 -> 6x6) happens where features are read:
``vladapter.features.store.FeatureStore`` (``adaptive_max_pool_2d``).

Two layouts of the published models are built here, so that their released checkpoints load
tensor for tensor (``vladapter.models.released``):

- ``single_norm=False`` (VL-T5's ``individual_vis_layer_norm``, the default): a norm after the
  feature projection and one after the box projection, then the sum with the image-order and
  object-order embeddings;
- ``single_norm=True``: the projections summed with both order embeddings, then one norm.

``norm`` is ``"layer"`` (``nn.LayerNorm``, VL-BART and this project's own models) or ``"rms"``
(T5's scale-only RMS norm, VL-T5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("layer", "rms")


def object_order(img_order: torch.Tensor, n_images: int = 2) -> torch.Tensor:
    """Index of each visual token among the tokens of its own image: ``(B, V)`` long.

    NLVR2 concatenates two images' tokens (img_order 0...0 1...1): both count from 0.
    """
    one_hot = F.one_hot(img_order, n_images)
    return ((one_hot.cumsum(dim=1) - 1) * one_hot).sum(-1)


def _norm(kind: str, d_model: int, eps: float) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d_model)
    if kind == "rms":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"visual norm must be one of {NORMS}, got {kind!r}")


class VisualEmbedding(nn.Module):
    """feature Linear (+norm) + box Linear(5) (+norm) + image-order embedding (+ the object-order
    embedding the caller passes), with one norm over the sum when ``single_norm``.

    The object-order embedding is the language model's own token embedding of the
    ``<vis_extra_id_i>`` rows (as in VL-T5), so :class:`VLModel` looks it up and passes it in.
    """

    def __init__(self, feat_dim: int, d_model: int, n_images: int = 2, norm: str = "layer",
                 single_norm: bool = False, eps: float = 1e-6):
        super().__init__()
        self.norm_kind, self.single_norm = norm, single_norm
        per_part = [] if single_norm else [_norm(norm, d_model, eps)]
        self.feat = nn.Sequential(nn.Linear(feat_dim, d_model), *per_part)
        self.box = nn.Sequential(nn.Linear(5, d_model), *([_norm(norm, d_model, eps)] if per_part else []))
        self.img_order = nn.Embedding(n_images, d_model)
        self.norm = _norm(norm, d_model, eps) if single_norm else None

    def forward(self, feats: torch.Tensor, img_order: torch.Tensor, boxes: torch.Tensor | None = None,
                obj_embeds: torch.Tensor | None = None):
        """``feats (B, V, feat_dim)``, ``img_order (B, V)``, ``boxes (B, V, 5)`` or None
        (CLIP grid features have no boxes: all zeros), ``obj_embeds (B, V, d_model)`` or None
        -> ``(B, V, d_model)``."""
        if boxes is None:
            # zero boxes embed to one constant vector: compute it once, broadcast it
            boxes = feats.new_zeros(1, 1, 5)
        out = self.feat(feats) + self.box(boxes) + self.img_order(img_order)
        if obj_embeds is not None:
            out = out + obj_embeds
        return out if self.norm is None else self.norm(out)
