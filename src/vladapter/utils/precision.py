"""Which reduced precision a device computes in natively: one rule for training, evaluation
and feature extraction."""

from __future__ import annotations

import torch


def auto_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of precision ``auto`` on ``device`` (None: float32, no autocast).

    bf16 on a GPU that computes it natively (compute capability 8.0 and above: A100, H100,
    ...), fp16 on older ones (V100, T4: bf16 there is emulated, several times slower, and
    the runs use fp16 with a GradScaler), fp32 on CPU. torch's ``is_bf16_supported()``
    counts emulation, hence ``including_emulation=False``.
    """
    if device.type != "cuda":
        return None
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if native and torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """``bf16``, ``fp16`` or ``fp32`` (None: no autocast)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]
