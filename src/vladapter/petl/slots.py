"""Where methods go in each architecture: the slot table of T5 and BART.

A *slot* is a sublayer output an adapter transforms (Houlsby placement: the output of
self-attention, of cross-attention, of the feed-forward block, before dropout, residual
and LayerNorm). Paths are module paths inside :class:`~vladapter.models.VLModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn

from vladapter.errors import ConfigError

KINDS = ("self_attn", "cross_attn", "ffn")
STACKS = ("encoder", "decoder")

# family -> stack -> (path of the stack, path of its layer list)
_STACKS = {
    "bart": {"encoder": ("lm.model.encoder", "lm.model.encoder.layers"),
             "decoder": ("lm.model.decoder", "lm.model.decoder.layers")},
    "t5": {"encoder": ("lm.encoder", "lm.encoder.block"),
           "decoder": ("lm.decoder", "lm.decoder.block")},
}
# family -> stack -> kind -> path of the sublayer inside one layer
_SUBLAYERS = {
    "bart": {
        "encoder": {"self_attn": "self_attn", "ffn": "fc2"},
        "decoder": {"self_attn": "self_attn", "cross_attn": "encoder_attn", "ffn": "fc2"},
    },
    "t5": {
        "encoder": {"self_attn": "layer.0.SelfAttention", "ffn": "layer.1.DenseReluDense"},
        "decoder": {"self_attn": "layer.0.SelfAttention", "cross_attn": "layer.1.EncDecAttention",
                    "ffn": "layer.2.DenseReluDense"},
    },
}
# family -> stack -> kind -> path of the module whose input is the sublayer's input X (the
# residual stream: BART's post-LN layer input, T5's un-normalised one before its pre-LN)
_INPUTS = {
    "bart": {"encoder": {"self_attn": "self_attn", "ffn": "fc1"},
             "decoder": {"self_attn": "self_attn", "cross_attn": "encoder_attn", "ffn": "fc1"}},
    "t5": {"encoder": {"self_attn": "layer.0", "ffn": "layer.1"},
           "decoder": {"self_attn": "layer.0", "cross_attn": "layer.1", "ffn": "layer.2"}},
}
# attention projection letter -> module name
_PROJECTIONS = {
    "bart": {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"},
    "t5": {"q": "q", "k": "k", "v": "v", "o": "o"},
}


@dataclass(frozen=True)
class Slot:
    stack: str   # encoder | decoder
    layer: int
    kind: str    # self_attn | cross_attn | ffn
    path: str    # the sublayer module whose output this slot is


def stack_path(family: str, stack: str) -> str:
    return _STACKS[family][stack][0]


def n_layers(model: nn.Module, stack: str) -> int:
    return len(model.get_submodule(_STACKS[model.family][stack][1]))


def stack_kinds(stack: str, kinds: Iterable[str] = KINDS) -> tuple[str, ...]:
    """The slot kinds a stack has, in KINDS order (the encoder has no cross-attention)."""
    return tuple(k for k in KINDS if k in kinds and (stack == "decoder" or k != "cross_attn"))


def slots(model: nn.Module, kinds: Iterable[str] = KINDS) -> list[Slot]:
    """Every slot of ``model`` whose kind is in ``kinds``, encoder first, layer by layer."""
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ConfigError(f"unknown adapter slot kinds {sorted(unknown)}; choose from {KINDS}")
    family = model.family
    out = []
    for stack in STACKS:
        layers_path = _STACKS[family][stack][1]
        for i in range(n_layers(model, stack)):
            for kind in stack_kinds(stack, kinds):
                out.append(Slot(stack, i, kind, f"{layers_path}.{i}.{_SUBLAYERS[family][stack][kind]}"))
    return out


def input_path(model: nn.Module, slot: Slot) -> str:
    """Path of the module whose first input is ``slot``'s sublayer input (what its
    residual connection adds back): VL-PET's gates read it."""
    layers_path = _STACKS[model.family][slot.stack][1]
    return f"{layers_path}.{slot.layer}.{_INPUTS[model.family][slot.stack][slot.kind]}"


def attention_linears(model: nn.Module, targets: Iterable[str]) -> list[str]:
    """Paths of the attention projections named by ``targets`` in every layer.

    A target is ``<stack>.<self_attn|cross_attn>.<q|k|v|o>``, e.g. ``decoder.cross_attn.v``.
    """
    family = model.family
    paths = []
    for target in targets:
        parts = target.split(".")
        if (len(parts) != 3 or parts[0] not in STACKS or parts[1] not in ("self_attn", "cross_attn")
                or parts[2] not in _PROJECTIONS[family] or (parts[0], parts[1]) == ("encoder", "cross_attn")):
            raise ConfigError(f"bad LoRA target {target!r}: use <encoder|decoder>.<self_attn|cross_attn>.<q|k|v|o> "
                              "(the encoder has no cross_attn)")
        stack, kind, proj = parts
        for slot in slots(model, [kind]):
            if slot.stack == stack:
                paths.append(f"{slot.path}.{_PROJECTIONS[family][proj]}")
    return paths


def layer_paths(model: nn.Module, stack: str) -> list[str]:
    """Paths of the layers of a stack, in order (read-only taps of each layer's output)."""
    layers_path = _STACKS[model.family][stack][1]
    return [f"{layers_path}.{i}" for i in range(n_layers(model, stack))]


# the LM head (both families): its input is the decoder's last hidden state (T5: scaled by
# d_model ** -0.5 first); a side network replaces it with Injector.replace_input
HEAD = "lm.lm_head"


def is_layernorm(module: nn.Module) -> bool:
    """nn.LayerNorm (BART) or T5's RMS-style ``T5LayerNorm``."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__ == "T5LayerNorm"
