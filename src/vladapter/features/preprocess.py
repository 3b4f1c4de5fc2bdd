"""CLIP image preprocessing with PIL and torch (torchvision does not work here).

The CLIP recipe: bicubic resize of the shorter side to ``size`` (the longer side scaled
by the same factor, truncated to an int), centre crop ``size`` x ``size``, scale to [0, 1],
normalise with the CLIP mean/std. This matches ``transformers.CLIPImageProcessor`` (tests
compare the two on the same image). ``size`` follows the model (``image_size`` of its vision
config: 224 for the OpenAI checkpoints, 64 for the toy CLIP), never a hard-coded 224.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_and_crop(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """Bicubic-resize the shorter side to ``size`` and centre-crop to a square.

    Accepts a PIL image or a uint8 ``(H, W, 3)`` array; returns uint8 ``(size, size, 3)``.
    An image already ``size`` x ``size`` is returned unchanged (no resampling).
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image = image.convert("RGB")
    w, h = image.size
    if (w, h) != (size, size):
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.BICUBIC)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return np.array(image, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays


@dataclass(frozen=True)
class ClipPreprocess:
    """Callable turning images into normalised ``(3, size, size)`` float32 tensors."""

    size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def pixels(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """The uint8 ``(size, size, 3)`` crop the model sees."""
        return resize_and_crop(image, self.size)

    def normalise(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``(..., H, W, 3)`` crops -> float32 ``(..., 3, H, W)`` normalised tensor, on
        the device of ``crops`` (a tensor) or the CPU (an array)."""
        import torch  # here, not at the top: `vladapter sample-frames --help` stays fast

        x = crops if isinstance(crops, torch.Tensor) else torch.as_tensor(np.asarray(crops))
        x = x.to(torch.float32).div_(255.0).movedim(-1, -3)
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x - mean) / std

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        return self.normalise(self.pixels(image))

    def to_dict(self) -> dict:
        """Recorded in the feature file's ``preprocessing`` attribute."""
        return {"resize": "shorter side, bicubic (PIL)", "center_crop": self.size, **asdict(self)}
