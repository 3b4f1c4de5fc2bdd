"""Path-safe keys of model names: one rule for feature files, run folders and the workflow."""

from __future__ import annotations


def name_key(name: str) -> str:
    """The path-safe key of a model name: its last path component (facebook/bart-base ->
    bart-base, models/toyclip/ -> toyclip), the model of an open_clip name
    (open_clip:RN101@openai -> RN101). Feature files are <source>.<name_key(backbone)>.h5,
    run folders models/<name_key(lm)>/<run>."""
    if name.startswith("open_clip:"):
        return name.split(":", 1)[1].split("@")[0]
    return name.rstrip("/").split("/")[-1]


def is_folder_name(spec: str) -> bool:
    """Whether a model name is a local folder (``models/...``, ``./...``, ``/...``) rather
    than a Hugging Face hub name or ``open_clip:...``: a missing one is an error, not a
    download."""
    return spec.startswith((".", "/", "models/")) or spec == "models"
