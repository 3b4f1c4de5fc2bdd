"""Adapter-only checkpoints: the trained parameters in safetensors + the method as JSON.

``save`` writes every parameter that trains (for full fine-tuning: the whole model) and
puts the method description and the base model's description in the safetensors header,
so a checkpoint is self-contained; ``method.json`` beside it repeats them for people and
DVC. ``load`` applies the method to a freshly built base model (if not yet applied),
checks the base model matches, and copies the tensors in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.method import apply, count

METHOD_FILE = "method.json"
# base-model facts a checkpoint must agree with (vocabulary, feature size, architecture)
MODEL_KEYS = ("lm", "family", "feat_dim", "text_vocab", "n_vis_extra")


def save(model: nn.Module, path: str | Path) -> Path:
    """Write the trained parameters of ``model`` to ``path`` (+ ``method.json`` beside it)."""
    from vladapter.utils.io import save_safetensors, write_json

    method = getattr(model, "petl_method", None)
    if method is None:
        raise ConfigError("no PETL method is applied to this model: petl.apply(model, ...) first, "
                          "or save a whole model with VLModel.save_pretrained")
    path = Path(path)
    tensors = {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    header = {"method": json.dumps(method), "model": json.dumps(model.vl_config), "format": "pt"}
    save_safetensors(tensors, path, metadata=header)
    n = count(model)
    write_json(path.parent / METHOD_FILE, {**method, "model": model.vl_config, "weights": path.name,
                                           "trainable": n.trainable, "total": n.total})
    return path


def read_header(path: str | Path) -> tuple[dict, dict]:
    """(method, model description) stored in a checkpoint written by :func:`save`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found; train the method first (vladapter train)")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ConfigError(f"{path} is not a readable safetensors file ({e}); delete it and retrain") from None
    if "method" not in header or "model" not in header:
        raise ConfigError(f"{path} has no PETL method in its header: it was not written by vladapter.petl.save")
    return json.loads(header["method"]), json.loads(header["model"])


def load(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a :func:`save` checkpoint into ``model`` (a fresh base model, or one with the
    same method already applied); returns ``model``."""
    from safetensors.torch import load_file

    path = Path(path)
    method, described = read_header(path)
    mismatched = {k: (described.get(k), model.vl_config.get(k)) for k in MODEL_KEYS
                  if described.get(k) != model.vl_config.get(k)}
    if mismatched:
        raise ConfigError(f"{path} was trained on another base model: (checkpoint, this model) = {mismatched}; "
                          "build the model with the checkpoint's settings")
    applied = getattr(model, "petl_method", None)
    if applied is None:
        apply(model, method["preset"], method["tasks"], **method["overrides"])
    elif applied != method:
        raise ConfigError(f"{path} holds {method['preset']} for tasks {method['tasks']}, but the model has "
                          f"{applied['preset']} for tasks {applied['tasks']} applied")
    tensors = load_file(str(path), device=str(model.device))
    params = dict(model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    unexpected = sorted(set(tensors) - set(params))
    missing = sorted(trainable - set(tensors))
    if unexpected or missing:
        raise ConfigError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise ConfigError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                  f"the model's is {tuple(params[name].shape)}")
            params[name].copy_(tensor)
    return model
