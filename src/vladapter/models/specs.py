"""Language-model architectures as data: one JSON per model in ``resources/models/``.

Each JSON holds the model ``family`` (``t5`` or ``bart``), the published ``checkpoint``
name (null for toy models) and the HF ``config`` keyword arguments. The paper-scale
configs are copied from the published checkpoints so that architectures (and parameter
counts) are exact here without downloading anything.
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
    """The spec called ``name`` (``tiny-t5``, ``tiny-bart``, ``t5-base``, ``bart-base``,
    ``facebook/bart-base`` ...); unknown names raise ConfigError listing the known ones."""
    key = ALIASES.get(name, name)
    path = resources.files("vladapter") / "resources" / "models" / f"{key}.json"
    if not path.is_file():
        raise ConfigError(
            f"unknown language model {name!r}; known: {', '.join(available_lms())} "
            f"(aliases: {', '.join(ALIASES)}). Add a JSON to src/vladapter/resources/models/ for a new one."
        )
    data = json.loads(path.read_text())
    if data.get("family") not in ("t5", "bart"):
        raise ConfigError(f"{path}: 'family' must be 't5' or 'bart', got {data.get('family')!r}")
    return LMSpec(name=key, family=data["family"], checkpoint=data.get("checkpoint"), config=data["config"])
