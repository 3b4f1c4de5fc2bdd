"""Language-model architectures as data: one JSON per model in ``resources/models/``.

Each JSON holds the model ``family`` (``t5`` or ``bart``), the published ``checkpoint``
name (null for toy models) and the HF ``config`` keyword arguments. The paper-scale
configs are copied from the published checkpoints so that architectures (and parameter
counts) are exact here without downloading anything.

Any other name is a checkpoint (vladapter.models.checkpoints): a local folder with a
``config.json`` or a hub id found in the HF cache; its family comes from the config's
``model_type``, and its weights load whenever the model is built for training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from vladapter.errors import ConfigError

# other spellings users type -> the resource file's name
ALIASES = {
    "facebook/bart-base": "bart-base",
    "google-t5/t5-base": "t5-base",
}
# config.json model_type -> family (the T5 and BART families the slot tables know)
MODEL_TYPES = {"t5": "t5", "bart": "bart"}


@dataclass(frozen=True)
class LMSpec:
    """A language-model architecture: its family, HF config kwargs and checkpoint name."""

    name: str
    family: str
    checkpoint: str | None
    config: dict[str, Any] = field(default_factory=dict)

    def hf_config(self, **overrides):
        """The transformers config object of this architecture (``overrides`` win)."""
        from transformers import BartConfig, T5Config

        cls = {"t5": T5Config, "bart": BartConfig}[self.family]
        return cls(**{**self.config, **overrides})


def available_lms() -> list[str]:
    """Names accepted by :func:`lm_spec` (resource files, without aliases)."""
    folder = resources.files("vladapter") / "resources" / "models"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def lm_spec(name: str) -> LMSpec:
    """The spec called ``name``: a resource file (``tiny-t5``, ``tiny-bart``, ``t5-base``,
    ``bart-base``, with aliases such as ``facebook/bart-base``), else the checkpoint of that
    name (local folder or hub id in the HF cache) read from its ``config.json``.
    A name that is neither raises ConfigError saying where it was looked for."""
    key = ALIASES.get(name, name)
    path = resources.files("vladapter") / "resources" / "models" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("family") not in ("t5", "bart"):
            raise ConfigError(f"{path}: 'family' must be 't5' or 'bart', got {data.get('family')!r}")
        return LMSpec(name=key, family=data["family"], checkpoint=data.get("checkpoint"), config=data["config"])
    return _checkpoint_spec(name)


def _checkpoint_spec(name: str) -> LMSpec:
    from vladapter.models.checkpoints import find_checkpoint, looks_like_path, read_config

    folder = find_checkpoint(name, required=False)
    if folder is None:
        known = f"known architectures: {', '.join(available_lms())} (aliases: {', '.join(ALIASES)})"
        if looks_like_path(name):
            find_checkpoint(name)  # raises, naming the missing config.json
        try:
            find_checkpoint(name)  # offline: raises, listing the cache folders looked in
        except ConfigError as e:
            raise ConfigError(f"unknown language model {name!r}: {e}; {known}") from None
        raise ConfigError(f"unknown language model {name!r}: not a folder and not in the local HF cache "
                          f"(download it first: huggingface-cli download {name}); {known}")
    config = read_config(folder)
    family = MODEL_TYPES.get(config.get("model_type"))
    if family is None:
        raise ConfigError(f"{folder / 'config.json'}: model_type {config.get('model_type')!r} is not an "
                          f"encoder-decoder this project wraps ({', '.join(MODEL_TYPES)})")
    kwargs = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "transformers_version")}
    from vladapter.utils.names import name_key  # the run folders' key: google-t5/t5-base -> t5-base

    return LMSpec(name=name_key(name), family=family, checkpoint=str(folder), config=kwargs)
