"""Small synthetic media for tests and benchmarks: mp4 videos (PyAV) and images whose
pixels say which frame / image they are, so a test can check what was sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def frame_value(i: int) -> int:
    """The grey level of frame ``i`` in ``write_video`` (distinct for the first 32 frames)."""
    return (i * 8) % 256


def write_video(path: str | Path, n_frames: int = 30, fps: int = 10, width: int = 64, height: int = 48,
                noise: bool = False, seed: int = 0, gop: int | None = None) -> Path:
    """Write an H.264 mp4 whose frame ``i`` is uniform grey ``frame_value(i)`` (plus random
    texture with ``noise``, which makes decoding cost like a real video's; ``gop``: keyframe interval)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for i in range(n_frames):
            img = np.full((height, width, 3), frame_value(i), np.uint8)
            if noise:
                img = (img + rng.integers(0, 64, img.shape)).clip(0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: str | Path, n_frames: int = 30, width: int = 64, height: int = 48) -> Path:
    """Write frames ``00001.jpg ...`` (the TVQA release's naming) whose frame ``i`` is uniform
    grey ``frame_value(i)``, like ``write_video``'s."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        Image.fromarray(np.full((height, width, 3), frame_value(i), np.uint8)).save(folder / f"{i + 1:05d}.jpg",
                                                                                    quality=95)
    return folder


def natural_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB frame with a natural image's 1/f amplitude spectrum (textures at every scale): what
    JPEG sizes and decoding costs are measured on when no real footage is at hand."""
    rng = np.random.default_rng(seed)
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    amplitude = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(height, width))
    out = np.empty((height, width, 3))
    for c in range(3):
        phase = np.exp(2j * np.pi * rng.random((height, width)))
        x = np.real(np.fft.ifft2(amplitude * phase))
        out[..., c] = (x - x.mean()) / (x.std() + 1e-9)
    return np.clip(128 + 40 * out, 0, 255).astype(np.uint8)


def write_image(path: str | Path, width: int = 80, height: int = 60, seed: int = 0) -> Path:
    """Write a random-texture RGB image (format from the suffix: .jpg, .png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path
