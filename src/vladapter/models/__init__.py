"""VL-T5 / VL-BART around unmodified HF models, their visual embedding and tokenizers.

    from vladapter.models import build_vl_model, load_tokenizer
    tok = load_tokenizer("models/tokenizer")
    model = build_vl_model("tiny-bart", feat_dim=64, n_vis_tokens=16, vocab_size=len(tok))
"""

import importlib

# name -> submodule; imported on first use (PEP 562), so a light submodule such as
# vladapter.models.tokenizer (`vladapter build-tokenizer --help`) does not pull in torch
_EXPORTS = {"LMSpec": "specs", "available_lms": "specs", "lm_spec": "specs", "VisualEmbedding": "visual",
            "object_order": "visual", "N_VIS_EXTRA": "vl_model", "ForwardContext": "vl_model",
            "VLModel": "vl_model", "build_vl_model": "vl_model"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vladapter.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vladapter.models' has no attribute {name!r}")


def load_tokenizer(path_or_name: str):
    """A tokenizer folder written by ``vladapter build-tokenizer``, or a HF name (lazy import)."""
    from vladapter.models.tokenizer import load_tokenizer as _load

    return _load(path_or_name)


__all__ = [
    "LMSpec", "available_lms", "lm_spec", "VisualEmbedding", "object_order",
    "N_VIS_EXTRA", "ForwardContext", "VLModel", "build_vl_model", "load_tokenizer",
]
