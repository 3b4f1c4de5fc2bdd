"""Where each dataset's raw files are: a raw-data root, and folders the user already has.

``RawLayout(root, paths)`` answers ``layout / "coco"`` with ``paths["coco"]`` when the user
named a folder for it (config ``data.paths``), else ``<root>/coco`` (config
``data.raw_dir``, default ``data/raw``). Readers index it exactly like a plain root
folder, so they never know whether a folder was downloaded here or lives elsewhere.
Nothing here writes: a user's folder is read where it lies, never modified or deleted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from vladapter.errors import ConfigError


class RawLayout:
    """``layout / dataset`` -> that dataset's folder (a ``Path``)."""

    def __init__(self, root: str | Path = "data/raw", paths: Mapping[str, str | Path] | None = None):
        self.root = Path(root)
        self.paths = {name: Path(p).expanduser() for name, p in (paths or {}).items()}

    def __truediv__(self, dataset: str) -> Path:
        return self.paths.get(dataset, self.root / dataset)

    def __repr__(self) -> str:
        return f"RawLayout({str(self.root)!r}, {dict((k, str(v)) for k, v in self.paths.items())!r})"

    def __str__(self) -> str:
        return str(self.root) if not self.paths else repr(self)

    def has(self, dataset: str) -> bool:
        return (self / dataset).is_dir()


def parse_paths(items: list[str] | None) -> dict[str, str]:
    """``["coco=/data/coco", ...]`` (the CLI's ``--path``) -> ``{"coco": "/data/coco"}``."""
    out = {}
    for item in items or []:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--path {item!r}: expected DATASET=FOLDER, e.g. coco=/data/coco")
        out[name] = folder
    return out


def as_layout(raw: str | Path | RawLayout) -> RawLayout:
    return raw if isinstance(raw, RawLayout) else RawLayout(raw)


def images_dir(folder: Path) -> Path:
    """``<folder>/images`` (the layout downloads write), or the dataset folder itself when
    the user unpacked the archives there (COCO's ``train2014/``, ``val2014/``)."""
    inner = Path(folder) / "images"
    return inner if inner.is_dir() or not Path(folder).is_dir() else Path(folder)
