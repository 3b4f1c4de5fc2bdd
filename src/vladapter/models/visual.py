"""The visual embedding of VL-T5 / VL-BART.

Pooling grid features to N tokens (7x7 -> 6x6) happens where features are read:
``vladapter.features.store.FeatureStore`` (``adaptive_max_pool_2d``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def object_order(img_order: torch.Tensor, n_images: int = 2) -> torch.Tensor:
    """Index of each visual token among the tokens of its own image: ``(B, V)`` long.

    NLVR2 concatenates two images' tokens (img_order 0...0 1...1): both count from 0.
    """
    one_hot = F.one_hot(img_order, n_images)
    return ((one_hot.cumsum(dim=1) - 1) * one_hot).sum(-1)


class VisualEmbedding(nn.Module):
    """feature Linear+LayerNorm + box Linear(5)+LayerNorm + image-order embedding.

    The object-order embedding is added by :class:`VLModel`: as in VL-T5 it is the
    language model's own token embedding of the ``<vis_extra_id_i>`` rows.
    """

    def __init__(self, feat_dim: int, d_model: int, n_images: int = 2):
        super().__init__()
        self.feat = nn.Sequential(nn.Linear(feat_dim, d_model), nn.LayerNorm(d_model))
        self.box = nn.Sequential(nn.Linear(5, d_model), nn.LayerNorm(d_model))
        self.img_order = nn.Embedding(n_images, d_model)

    def forward(self, feats: torch.Tensor, img_order: torch.Tensor, boxes: torch.Tensor | None = None):
        """``feats (B, V, feat_dim)``, ``img_order (B, V)``, ``boxes (B, V, 5)`` or None
        (CLIP grid features have no boxes: all zeros) -> ``(B, V, d_model)``."""
        if boxes is None:
            # zero boxes embed to one constant vector: compute it once, broadcast it
            boxes = feats.new_zeros(1, 1, 5)
        return self.feat(feats) + self.box(boxes) + self.img_order(img_order)
