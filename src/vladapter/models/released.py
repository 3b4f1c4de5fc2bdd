"""VL-T5 / VL-BART's released pre-trained checkpoints as a starting backbone.

VL-T5 (Cho et al., 2021) released its VL pre-training as ``snap/pretrain/VLT5/Epoch30.pth`` and
``snap/pretrain/VLBart/Epoch30.pth``: plain ``state_dict``s of its own model classes, saved
with ``torch.save`` (sometimes from a DDP wrapper, so every key starts with ``module.``).
:func:`import_released` maps every tensor of such a file onto :class:`VLModel` and writes a
model folder (``VLModel.save_pretrained`` + the tokenizer + ``released.json``) that
``vladapter train --init`` starts from, as it would from this project's own pre-training.

What differs from this project's layout, and how it is mapped:

- names: VL-T5's ``shared`` / ``encoder.block...`` (VL-BART's ``model.shared`` /
  ``model.encoder.layers...``) are the Hugging Face names under ``lm.``; the visual
  embedding ``encoder.visual_embedding.{feat_embedding,absolute_vis_pos_embedding,
  img_order_embedding,layer_norm}`` becomes ``visual.{feat,box,img_order,norm}``;
- structure: VL-T5's norms are T5's scale-only RMS norm, VL-BART's are LayerNorms; either has
  a norm per part or one over the sum (``layer_norm``), which the model is built with
  (``VisualEmbedding(norm=, single_norm=)``);
- vocabulary: VL-T5 has 32,200 rows (T5's 32,100 tokens + 100 ``<vis_extra_id_i>``), VL-BART
  50,465 (BART's 50,265 + ``<extra_id_99..0>`` + ``<vis_extra_id_99..0>``). Both put
  ``<vis_extra_id_i>`` at row ``rows - 1 - i``; this project puts the object-order rows after
  the text tokens in increasing order (``text_vocab + i``), so those rows are reversed. The
  tokenizer must hold exactly the text rows: BART's gets VL-BART's ``<extra_id_99..0>`` added,
  in VL-BART's order, and is saved with the model;
- ties: the token embedding also appears as the encoder's, the decoder's, the object-order
  embedding's and (tied) the LM head's; each copy must equal ``shared`` or the file is refused.

Every tensor is accounted for: each key of the file maps to a parameter, is a tied copy checked
equal, or is on :data:`IGNORED` with its reason; every parameter of the model is filled. A key
that maps nowhere, a parameter left unfilled or a shape that does not fit is a ConfigError
naming it (the reference code loads with ``strict=False``, which drops such weights silently).
The file is read with ``torch.load(weights_only=True)``: tensors and containers only, no code.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from vladapter.errors import ConfigError
from vladapter.utils.io import file_sha256

log = logging.getLogger(__name__)

INFO_FILE = "released.json"
TOKENIZER_DIR = "tokenizer"
N_SENTINELS = 100  # VL-BART's <extra_id_99..0>, added to BART's tokenizer as text tokens

# keys of released files that carry no weight of the model, and why
IGNORED = {
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight":
        "created by transformers < 4 for T5's cross-attention, which never uses it",
    "model.encoder.version": "fairseq's format marker, not a weight",
    "model.decoder.version": "fairseq's format marker, not a weight",
}

# released visual-embedding names -> this project's (after the family's prefix)
_VISUAL = {
    "feat_embedding.0.": "feat.0.",
    "feat_embedding.1.": "feat.1.",
    "absolute_vis_pos_embedding.0.": "box.0.",
    "absolute_vis_pos_embedding.1.": "box.1.",
    "img_order_embedding.": "img_order.",
    "layer_norm.": "norm.",
}


@dataclass(frozen=True)
class Layout:
    """Where a family keeps its token embedding, its tied copies and its visual embedding."""

    family: str
    default_lm: str
    shared: str                     # the token embedding (rows = text + visual-order tokens)
    tied: tuple[str, ...]           # copies that must equal ``shared``
    visual: str                     # prefix of the visual embedding
    vocab_rows: tuple[str, ...]     # other tensors indexed by vocabulary on their last axis
    norm: str                       # "rms" (T5) or "layer" (BART)

    def target(self, key: str) -> str:
        """This project's name of the released ``key`` (``lm.`` + the HF name, or ``visual.``)."""
        if key.startswith(self.visual):
            rest = key[len(self.visual):]
            for old, new in _VISUAL.items():
                if rest.startswith(old):
                    return "visual." + new + rest[len(old):]
            return ""  # an unknown part of the visual embedding: maps nowhere
        return "lm." + key


LAYOUTS = {
    "t5": Layout("t5", "t5-base", "shared.weight",
                 ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                  "encoder.visual_embedding.obj_order_embedding.weight"),
                 "encoder.visual_embedding.", (), "rms"),
    "bart": Layout("bart", "bart-base", "model.shared.weight",
                   ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
                    "model.encoder.visual_embedding.obj_order_embedding.weight"),
                   "model.encoder.visual_embedding.", ("final_logits_bias",), "layer"),
}


def read_state_dict(path: str | Path) -> dict:
    """The tensors of a released ``.pth`` (``weights_only``: no code runs), ``module.`` stripped."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"released checkpoint {path} not found; download VL-T5's snap/pretrain/VLT5/Epoch30.pth "
                          "(or VLBart/Epoch30.pth) and name that file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ConfigError(f"cannot read {path} as a plain state dict with torch.load(weights_only=True) "
                          f"({str(e).splitlines()[0][:200]}); only tensors and containers are read, never code: "
                          "re-save it as torch.save(model.state_dict(), path) where it was made") from None
    if isinstance(state, dict) and set(state) & {"model", "state_dict"} and not any(
            isinstance(v, torch.Tensor) for v in state.values()):
        state = state.get("model", state.get("state_dict"))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} is not a state dict (a mapping of names to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def detect_family(state: dict, path: str | Path = "the checkpoint") -> str:
    if "shared.weight" in state and any(k.startswith("encoder.block.") for k in state):
        return "t5"
    if "model.shared.weight" in state and any(k.startswith("model.encoder.layers.") for k in state):
        return "bart"
    raise ConfigError(f"{path} is neither VL-T5's layout (shared.weight, encoder.block.*) nor VL-BART's "
                      "(model.shared.weight, model.encoder.layers.*); its first keys: "
                      + ", ".join(sorted(state)[:5]))


def _prepare_tokenizer(tokenizer, family: str, rows: int):
    """The tokenizer whose tokens are exactly the checkpoint's text rows (BART: VL-BART's sentinels added)."""
    n_extra = rows - len(tokenizer)
    if family == "bart" and n_extra == 2 * N_SENTINELS and "<extra_id_0>" not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [
            f"<extra_id_{i}>" for i in range(N_SENTINELS - 1, -1, -1)]})
    return tokenizer


def _vocab_index(rows: int, text_vocab: int):
    """Released row of each of this project's rows: text rows as they are, then object i <- rows-1-i."""
    import torch

    n_vis = rows - text_vocab
    return torch.cat([torch.arange(text_vocab), torch.arange(rows - 1, rows - 1 - n_vis, -1)])


def map_state(state: dict, model, layout: Layout, path: str | Path = "the checkpoint") -> dict:
    """``state`` renamed and reordered into ``model``'s names; ConfigError for anything unaccounted."""
    import torch

    rows = state[layout.shared].shape[0]
    index = _vocab_index(rows, model.vl_config["text_vocab"])
    shared = state[layout.shared]
    targets = dict(model.state_dict(keep_vars=True))
    head_tied = model.lm.get_output_embeddings().weight is model.lm.get_input_embeddings().weight
    tied = set(layout.tied) | ({"lm_head.weight"} if head_tied else set())
    mapped: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if key in IGNORED:
            continue
        if key in tied:
            if value.shape != shared.shape or not torch.equal(value, shared):
                raise ConfigError(f"{path}: {key} should be a tied copy of {layout.shared} but differs from it; "
                                  "the file is not one model's state dict")
            continue
        name = layout.target(key)
        if name not in targets:
            unmapped.append(key)
            continue
        if key == layout.shared or key in layout.vocab_rows or key == "lm_head.weight":
            axis = 0 if value.shape[0] == rows else value.dim() - 1
            if value.shape[axis] != rows:
                raise ConfigError(f"{path}: {key} has shape {tuple(value.shape)}, not {rows} vocabulary rows")
            value = value.index_select(axis, index)
        if tuple(value.shape) != tuple(targets[name].shape):
            raise ConfigError(f"{path}: {key} has shape {tuple(value.shape)}, but {name} of "
                              f"{model.vl_config['lm']} has {tuple(targets[name].shape)}; name the LM the "
                              "checkpoint was trained from (--lm)")
        mapped[name] = value.to(torch.float32)
    if unmapped:
        raise ConfigError(f"{path}: {len(unmapped)} key(s) map to no tensor of the model: "
                          + ", ".join(unmapped[:8]) + ("" if len(unmapped) <= 8 else ", ...")
                          + f" (expected VL-T5/VL-BART's layout for {model.vl_config['lm']})")
    # every tensor of the model filled: a tied parameter counts as filled through any of its names
    filled = {id(targets[name]) for name in mapped}
    missing = [name for name, t in targets.items() if id(t) not in filled]
    if missing:
        raise ConfigError(f"{path} has no weights for {len(missing)} tensor(s) of the model: "
                          + ", ".join(missing[:8]) + ("" if len(missing) <= 8 else ", ..."))
    return mapped


def import_released(checkpoint: str | Path, tokenizer: str, lm: str | None = None, n_vis_tokens: int = 36):
    """(model, tokenizer, info) of a released VL-T5 / VL-BART checkpoint, every tensor accounted for."""
    from vladapter.models import load_tokenizer
    from vladapter.models.vl_model import VLModel, _hf_class
    from vladapter.models.specs import lm_spec

    state = read_state_dict(checkpoint)
    family = detect_family(state, checkpoint)
    layout = LAYOUTS[family]
    spec = lm_spec(lm or layout.default_lm)
    if spec.family != family:
        raise ConfigError(f"{checkpoint} is a VL-{family.upper()} checkpoint, but --lm {spec.name} is a "
                          f"{spec.family} model; name a {family} LM (default {layout.default_lm})")
    rows = state[layout.shared].shape[0]
    tok = _prepare_tokenizer(load_tokenizer(tokenizer), family, rows)
    text_vocab = len(tok)
    if not 0 < rows - text_vocab <= 1000:
        raise ConfigError(f"{checkpoint} has {rows} vocabulary rows and the tokenizer {tokenizer} {text_vocab} "
                          "tokens: the rows beyond the text should be the <vis_extra_id> tokens; name the "
                          "tokenizer the checkpoint was trained with")
    feat_key = layout.visual + "feat_embedding.0.weight"
    if feat_key not in state:
        raise ConfigError(f"{checkpoint} has no {feat_key}: not a VL pre-trained checkpoint")
    single = any(k.startswith(layout.visual + "layer_norm.") for k in state)
    hf_cls = _hf_class(family)
    lm_model = hf_cls(spec.hf_config(vocab_size=rows))
    model = VLModel(lm_model, name=spec.name, family=family, feat_dim=int(state[feat_key].shape[1]),
                    n_vis_tokens=n_vis_tokens, text_vocab=text_vocab, n_vis_extra=rows - text_vocab,
                    visual_norm=layout.norm, visual_single_norm=single)
    mapped = map_state(state, model, layout, checkpoint)
    model.load_state_dict(mapped, strict=False)  # map_state checked that every tensor is filled
    info = {
        "source": str(checkpoint), "sha256": file_sha256(checkpoint), "family": family, "lm": spec.name,
        "tensors": len(state), "ignored": sorted(k for k in state if k in IGNORED),
        "tied_copies": sorted(k for k in state if k in layout.tied or (k == "lm_head.weight" and k not in mapped)),
        "vocab_rows": rows, "text_vocab": text_vocab, "vis_extra": rows - text_vocab,
        "visual_norm": layout.norm, "visual_single_norm": single,
    }
    return model, tok, info



def write_imported(model, tokenizer, info: dict, out: str | Path) -> None:
    """The model folder (weights, vl_config.json, tokenizer/, released.json), atomically."""
    from vladapter.utils.io import atomic_dir

    with atomic_dir(out) as tmp:
        model.write_pretrained(tmp)
        tokenizer.save_pretrained(str(tmp / TOKENIZER_DIR))
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


# --- CLI ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="the released .pth (VL-T5's snap/pretrain/VLT5/Epoch30.pth or VLBart/Epoch30.pth)")
    parser.add_argument("--tokenizer", required=True,
                        help="the LM's tokenizer (t5-base, facebook/bart-base, or a folder); BART's gets "
                             "VL-BART's <extra_id> tokens added")
    parser.add_argument("--lm", default=None, help="the architecture (default: t5-base / bart-base by the file)")
    parser.add_argument("--n-vis-tokens", type=int, default=36, help="visual tokens per image (default: 36)")
    parser.add_argument("--out", required=True,
                        help="model folder to write; train with --init OUT --tokenizer OUT/tokenizer")


def run(args: argparse.Namespace) -> int:
    if not re.fullmatch(r"[1-9][0-9]*", str(args.n_vis_tokens)):
        raise ConfigError("--n-vis-tokens must be a positive integer")
    model, tok, info = import_released(args.checkpoint, args.tokenizer, args.lm, args.n_vis_tokens)
    write_imported(model, tok, info, args.out)
    print(f"wrote {args.out}: VL-{info['family'].upper()} from {args.checkpoint}, {info['tensors']} tensors "
          f"({len(info['tied_copies'])} tied copies, {len(info['ignored'])} ignored), vocabulary "
          f"{info['text_vocab']} text + {info['vis_extra']} <vis_extra_id> rows")
    return 0
