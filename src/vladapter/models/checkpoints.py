"""Finding a named checkpoint: a local folder, or a hub id in any of its spellings.

A checkpoint is named by a folder holding ``config.json`` (``/models/bart-base``) or by a
Hugging Face hub id. Hub ids have aliases (``t5-base`` is now ``google-t5/t5-base``;
people write ``bart-base`` for ``facebook/bart-base``); the local HF cache stores a
checkpoint under the spelling it was downloaded with, so every spelling is looked up
there. Offline (``HF_HUB_OFFLINE=1``), a checkpoint found nowhere is a ConfigError that
says what was looked for where; online, the hub id is handed to transformers to download.
"""

from __future__ import annotations

import json
from pathlib import Path

from vladapter.errors import ConfigError

# every spelling of one published checkpoint, the hub's current id first
HUB_ALIASES: tuple[tuple[str, ...], ...] = (
    ("google-t5/t5-base", "t5-base"),
    ("facebook/bart-base", "bart-base"),
    ("openai/clip-vit-base-patch32", "clip-vit-base-patch32"),
    ("timm/resnet101_clip.openai",),
)
CONFIG_FILE = "config.json"


def spellings(name: str) -> list[str]:
    """``name`` and its aliases (``t5-base`` -> ``[t5-base, google-t5/t5-base]``)."""
    for group in HUB_ALIASES:
        if name in group:
            return [name, *(n for n in group if n != name)]
    return [name]


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_snapshot(repo_id: str, marker: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local HF cache holding ``marker``, or None."""
    from huggingface_hub import try_to_load_from_cache

    if repo_id.count("/") > 1:
        return None
    try:
        found = try_to_load_from_cache(repo_id, marker)
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def find_checkpoint(name: str, marker: str = CONFIG_FILE, required: bool = True) -> Path | None:
    """The local folder of the checkpoint ``name`` (a folder holding ``marker``, or its
    snapshot in the HF cache under any spelling of the hub id).

    Not found: online, None (the caller downloads by hub id); offline or for a path, a
    ConfigError listing every place looked in when ``required``, else None.
    """
    from huggingface_hub import constants

    path = Path(name).expanduser()
    if looks_like_path(name):
        if (path / marker).is_file():
            return path
        if not required:
            return None
        raise ConfigError(f"checkpoint folder {name!r} has no {marker} (looked for {path / marker}); "
                          "name a folder written by save_pretrained, or a hub id such as facebook/bart-base")
    tried = []
    for repo_id in spellings(name):
        snap = _cached_snapshot(repo_id, marker)
        if snap is not None:
            return snap
        tried.append(f"{constants.HF_HUB_CACHE}/models--{repo_id.replace('/', '--')}")
    if not required or not _offline():
        return None
    raise ConfigError(
        f"checkpoint {name!r} not found offline: no folder {path}/{marker}, and no {marker} in the HF cache at "
        + ", ".join(tried) + ". Its files must be in the HF cache or a local folder: download it where the "
        "network is reachable (huggingface-cli download "
        f"{spellings(name)[-1] if '/' in spellings(name)[-1] else name}) and copy the cache (or set HF_HOME), "
        "or name a local folder")


def read_config(folder: Path) -> dict:
    """The ``config.json`` of a checkpoint folder (ConfigError when unreadable)."""
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path} ({e}); the checkpoint folder is incomplete") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; the checkpoint folder is broken")
    return data
