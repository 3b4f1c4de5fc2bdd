"""VL-T5 / VL-BART around unmodified HF models, their visual embedding and tokenizers.

    from vladapter.models import build_vl_model, load_tokenizer
    tok = load_tokenizer("models/tokenizer")
    model = build_vl_model("tiny-bart", feat_dim=64, n_vis_tokens=16, vocab_size=len(tok))
"""

from vladapter.models.specs import LMSpec, available_lms, lm_spec
from vladapter.models.visual import VisualEmbedding, object_order
from vladapter.models.vl_model import N_VIS_EXTRA, ForwardContext, VLModel, build_vl_model


def load_tokenizer(path_or_name: str):
    """A tokenizer folder written by ``vladapter build-tokenizer``, or a HF name (lazy import)."""
    from vladapter.models.tokenizer import load_tokenizer as _load

    return _load(path_or_name)


__all__ = [
    "LMSpec", "available_lms", "lm_spec", "VisualEmbedding", "object_order",
    "N_VIS_EXTRA", "ForwardContext", "VLModel", "build_vl_model", "load_tokenizer",
]
