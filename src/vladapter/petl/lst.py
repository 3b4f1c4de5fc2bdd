"""Ladder side-tuning (LST; Sung, Cho & Bansal, NeurIPS 2022): a small network beside the backbone.

A side network of the LM's own block type at width d/r (``d_model``, ``d_ff`` and ``d_kv``
divided by r, the same number of heads) reads the backbone's layer outputs through
read-only taps ("ladders")::

    h = side_input(embeddings)                      Linear(d -> d/r)
    for each backbone layer i with a side block:    (all of them by default; ``layers`` drops some)
        mu_i = sigmoid(alpha_i / T)                 alpha_i = 0 at init, T = 0.1
        h = mu_i * h + (1 - mu_i) * down_i(h_i)     down_i = Linear(d -> d/r), h_i = layer i's output
                                                    (zero at the encoder's visual positions)
        h = side_block_i(h)
    logits = lm_head(up(final_norm(h)))             up = Linear(d/r -> d); T5 keeps its d^-0.5 scaling

Vision-language wiring: the backbone encoder reads the text only (detached: the backbone
builds no autograd graph and saves no activation for backward); the side encoder reads text
and visual tokens, with backbone activations counted as zero at the visual positions. The
side decoder cross-attends to the side encoder, the backbone decoder to the backbone encoder.
Nothing here edits HF modules: the side network is the child ``model.side`` and forward
(pre-)hooks on the stacks and taps on their layers, all added through the contract's
``Injector`` (``petl/contract.py``), so ``petl.remove`` gives back the bare model.

T5 blocks are pre-LN with a final LayerNorm per stack; BART's are post-LN with a LayerNorm
on the embeddings and none at the end. The BART side network mirrors that: its encoder input
gets its own LayerNorm (after positions, as BART's ``layernorm_embedding``), its decoder reads
the backbone decoder's embedded input (already normalised) and the last side block's
LayerNorm is the final one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.contract import HostModel, Injector, Method, first_input
from vladapter.petl.slots import n_layers, stack_path

INITS = ("fisher", "random")


@dataclass(frozen=True)
class LSTConfig(Method):
    """LST's options (defaults: the paper's VL setting)."""

    method: ClassVar[str] = "lst"
    needs_backbone_grad: ClassVar[bool] = False  # beside the backbone: it only reads its activations
    reduction_factor: int = 4          # side width d/r (d_model, d_ff, d_kv / r; same heads)
    layers: tuple[int, ...] | None = None  # backbone layers that get a side block (None: all)
    init: str = "fisher"               # side blocks from the Fisher-pruned backbone, or "random"
    fisher_examples: int = 1024        # training examples whose squared gradients rank the weights
    gate_temperature: float = 0.1      # T of mu = sigmoid(alpha / T)

    def __post_init__(self):
        for name in ("reduction_factor", "fisher_examples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"lst {name} must be a positive integer, got {value!r}")
        if self.init not in INITS:
            raise ConfigError(f"lst init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not isinstance(self.gate_temperature, (int, float)) or not self.gate_temperature > 0:
            raise ConfigError(f"lst gate_temperature must be > 0, got {self.gate_temperature!r}")
        if self.layers is not None:
            if (not self.layers or len(set(self.layers)) != len(self.layers)
                    or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.layers)):
                raise ConfigError(f"lst layers must be distinct layer indices >= 0, got {list(self.layers)!r}")

    @property
    def per_task(self) -> bool:
        return False

    def inject(self, model: HostModel, tasks: Iterable[str], at: Injector) -> None:
        if getattr(model, "side", None) is not None:
            raise ConfigError("the model already has a side network: LST is applied twice")
        if model.prompts is not None:
            raise ConfigError("LST cannot be combined with soft prompts (the backbone encoder reads the text only)")
        trained = [n for n, p in model.lm.named_parameters() if p.requires_grad]
        if trained:
            raise ConfigError(f"LST trains no backbone parameter (its backward never enters the backbone), but "
                              f"{len(trained)} are set to train (e.g. {trained[0]}): use a preset whose `train` groups "
                              "are outside the backbone (visual)")
        side = at.add_child(model, "side", LadderSideNetwork(self, model))
        side.attach(model, at)
        # the taps must see every decoder position: generate without a KV cache
        at.set_attribute(model, "generation_options", {**model.generation_options, "use_cache": False})


def _reduced_config(config, family: str, r: int):
    cfg = copy.deepcopy(config)
    if family == "t5":
        sizes = {"d_model": cfg.d_model, "d_ff": cfg.d_ff, "d_kv": cfg.d_kv}
    else:
        sizes = {"d_model": cfg.d_model, "encoder_ffn_dim": cfg.encoder_ffn_dim,
                 "decoder_ffn_dim": cfg.decoder_ffn_dim}
    bad = {k: v for k, v in sizes.items() if v % r}
    if bad:
        raise ConfigError(f"lst reduction_factor {r} does not divide the LM's sizes {bad}")
    for key, value in sizes.items():
        setattr(cfg, key, value // r)
    heads = cfg.num_heads if family == "t5" else cfg.encoder_attention_heads
    if family == "bart" and cfg.d_model % heads:
        raise ConfigError(f"lst side width {cfg.d_model} is not divisible by the {heads} attention heads")
    return cfg


class SideStack(nn.Module):
    """One side stack (encoder or decoder): input projection, ladders, gates, blocks."""

    def __init__(self, family: str, config, d_model: int, layers: tuple[int, ...], decoder: bool,
                 temperature: float):
        super().__init__()
        from transformers.models.bart.modeling_bart import BartDecoderLayer, BartEncoderLayer
        from transformers.models.t5.modeling_t5 import T5Block, T5LayerNorm

        self.family, self.config, self.is_decoder, self.temperature = family, config, decoder, temperature
        self.layers = layers
        width, bias = config.d_model, family == "bart"
        self.input = nn.Linear(d_model, width, bias=bias)
        self.down = nn.ModuleList(nn.Linear(d_model, width, bias=bias) for _ in layers)
        self.gates = nn.Parameter(torch.zeros(len(layers)))  # alpha_i
        if family == "t5":
            self.blocks = nn.ModuleList(T5Block(config, has_relative_attention_bias=(j == 0), layer_idx=j)
                                        for j in range(len(layers)))
            self.final_norm = T5LayerNorm(width, eps=config.layer_norm_epsilon)
            self.input_norm = None
        else:
            layer_cls = BartDecoderLayer if decoder else BartEncoderLayer
            self.blocks = nn.ModuleList(layer_cls(config, layer_idx=j) for j in range(len(layers)))
            self.final_norm = None  # post-LN blocks: the last block's LayerNorm is the final one
            # the decoder reads the backbone's normalised decoder input; the encoder normalises its own
            self.input_norm = None if decoder else nn.LayerNorm(width)
        self.dropout = config.dropout_rate if family == "t5" else config.dropout

    def mu(self) -> torch.Tensor:
        return torch.sigmoid(self.gates / self.temperature)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None, taps: list[torch.Tensor],
                encoder: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``inputs (B, S, d)`` (already embedded), ``taps[i] (B, S_i, d)`` of the layers in
        ``self.layers`` (S_i <= S: the encoder's text; positions after it get zero from the
        ladder); a decoder cross-attends to ``encoder (B, S', d/r)``."""
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

        cfg = self.config
        if self.family == "t5":
            x = self.input(F.dropout(inputs, self.dropout, self.training))
        else:
            x = self.input(inputs)
            if self.input_norm is not None:
                x = self.input_norm(x)
            x = F.dropout(x, self.dropout, self.training)
        if self.is_decoder:
            attn = create_causal_mask(config=cfg, inputs_embeds=x, attention_mask=mask, cache=None)
            cross = create_bidirectional_mask(config=cfg, inputs_embeds=x, attention_mask=encoder_mask,
                                              encoder_hidden_states=encoder)
        else:
            attn = create_bidirectional_mask(config=cfg, inputs_embeds=x, attention_mask=mask)
        mu = self.mu().to(x.dtype)
        bias = cross_bias = None
        for j, block in enumerate(self.blocks):
            ladder = self.down[j](taps[j].to(x.dtype))
            if ladder.shape[1] < x.shape[1]:  # the encoder's visual positions: the backbone never saw them
                ladder = F.pad(ladder, (0, 0, 0, x.shape[1] - ladder.shape[1]))
            x = mu[j] * x + (1 - mu[j]) * ladder
            if self.family == "t5":
                x, bias, cross_bias_j = block(x, attn, bias, encoder, cross if self.is_decoder else None,
                                              cross_bias, cache=None)
                if self.is_decoder:
                    cross_bias = cross_bias_j
            elif self.is_decoder:
                x = block(x, attn, encoder, encoder_attention_mask=cross, cache=None, use_cache=False)
            else:
                x = block(x, attn)
        if self.final_norm is not None:
            x = F.dropout(self.final_norm(x), self.dropout, self.training)
        return x


def _arg(args: tuple, kwargs: dict, name: str, index: int):
    return kwargs[name] if name in kwargs else (args[index] if len(args) > index else None)


class LadderSideNetwork(nn.Module):
    """``model.side``: the side encoder and decoder, the upsampler, and the hooks wiring them.

    State between hooks (the taps, the side encoder's output) lives for one forward or one
    ``generate`` call. ``enabled`` off makes every hook a no-op (the Fisher pass runs the bare
    backbone). Hooks are methods or small objects holding the network (not closures), so
    ``copy.deepcopy`` of the model maps them onto the copy.
    """

    def __init__(self, config: LSTConfig, model: nn.Module):
        super().__init__()
        family = model.family
        self.family, self.lst = family, config
        self.context = model.context
        d = model.d_model
        self.enabled = True
        self._taps: dict[str, dict[int, torch.Tensor]] = {"encoder": {}, "decoder": {}}
        self._state: dict = {}
        lm_configs = {"encoder": model.get_submodule(stack_path(family, "encoder")).config,
                      "decoder": model.get_submodule(stack_path(family, "decoder")).config}
        stacks = {}
        for stack in ("encoder", "decoder"):
            total = n_layers(model, stack)
            layers = tuple(range(total)) if config.layers is None else tuple(sorted(config.layers))
            if layers[-1] >= total:
                raise ConfigError(f"lst layers {list(config.layers)} name layer {layers[-1]}, but the "
                                  f"{stack} has {total} layers (0..{total - 1})")
            side_cfg = _reduced_config(lm_configs[stack], family, config.reduction_factor)
            stacks[stack] = SideStack(family, side_cfg, d, layers, stack == "decoder", config.gate_temperature)
        self.encoder, self.decoder = stacks["encoder"], stacks["decoder"]
        self.up = nn.Linear(self.encoder.config.d_model, d, bias=family == "bart")
        if family == "t5":  # the side encoder's text gets T5's relative positions, its visual tokens none
            first = self.encoder.blocks[0].layer[0].SelfAttention.relative_attention_bias
            first.register_forward_hook(model._text_relative_bias_only)

    # --- hooks ---------------------------------------------------------------------------
    def attach(self, model: HostModel, at: Injector) -> None:
        """The hooks wiring the side network to the backbone, added through ``at``."""
        family = self.family
        encoder = model.get_submodule(stack_path(family, "encoder"))
        decoder = model.get_submodule(stack_path(family, "decoder"))
        self._backbone_positions = (encoder.embed_positions,) if family == "bart" else ()  # not a submodule
        layer_lists = {"encoder": encoder.block if family == "t5" else encoder.layers,
                       "decoder": decoder.block if family == "t5" else decoder.layers}
        at.forward_pre_hook(encoder, self._encoder_inputs)
        at.forward_hook(encoder, self._side_encoder)
        at.forward_pre_hook(decoder, self._decoder_inputs)
        at.forward_hook(decoder, self._side_decoder)
        for stack, side in (("encoder", self.encoder), ("decoder", self.decoder)):
            for i in side.layers:
                at.tap(layer_lists[stack][i], _Tap(self, stack, i))
        # the decoder's side input is the backbone decoder's embedded input (layer 0's input)
        at.forward_pre_hook(layer_lists["decoder"][0], self._decoder_embedded)

    def _encoder_inputs(self, module, args, kwargs):
        """The backbone encoder gets the text only, detached; the side keeps text + vision."""
        if not self.enabled:
            return None
        embeds = _arg(args, kwargs, "inputs_embeds", 2)
        mask = _arg(args, kwargs, "attention_mask", 1)
        span = self.context.text_span
        if embeds is None or span is None:
            raise ConfigError("LST needs the VL model's inputs: call the VLModel, not its language model")
        start, length = span
        if start != 0:
            raise ConfigError("LST expects the text first in the encoder sequence (no prompts)")
        self._taps = {"encoder": {}, "decoder": {}}
        self._state = {"embeds": embeds, "mask": mask}
        kwargs = {k: v for k, v in kwargs.items() if k not in ("inputs_embeds", "attention_mask", "input_ids")}
        kwargs["inputs_embeds"] = embeds[:, :length].detach()
        kwargs["attention_mask"] = None if mask is None else mask[:, :length]
        return (), kwargs

    def _side_encoder(self, module, args, kwargs, output):
        if not self.enabled:
            return None
        embeds, mask = self._state["embeds"], self._state["mask"]
        inputs = embeds
        if self.family == "bart":
            # learned positions of the text (the model's hook zeroes the rest); the input only
            # gives the shape, detached so that the frozen module builds no graph
            positions = self._backbone_positions[0](embeds[:, :, -1].detach())
            inputs = embeds + positions.to(embeds.dtype)
        # the text's taps, downsampled before the visual positions are padded with zeros (so
        # the downsampler keeps a text-wide input for its backward, not a text + vision one)
        self._state["side"] = self.encoder(inputs, mask, [self._taps["encoder"][i] for i in self.encoder.layers])
        self._taps["encoder"] = {}
        return None

    def _decoder_inputs(self, module, args, kwargs):
        """The backbone decoder attends to the text only: its encoder mask is cut to the text."""
        if not self.enabled:
            return None
        hidden = kwargs.get("encoder_hidden_states")
        mask = kwargs.get("encoder_attention_mask")
        if hidden is not None and mask is not None and mask.shape[1] != hidden.shape[1]:
            kwargs = {**kwargs, "encoder_attention_mask": mask[:, :hidden.shape[1]]}
        self._state["decoder_mask"] = kwargs.get("attention_mask")
        return args, kwargs

    def _decoder_embedded(self, module, args, kwargs):
        if self.enabled:
            self._state["decoder_inputs"] = first_input(args, kwargs, "hidden_states")

    def _side_decoder(self, module, args, kwargs, output):
        if not self.enabled:
            return None
        if "side" not in self._state:
            raise ConfigError("LST's decoder ran without its encoder: pass the encoder inputs through the VLModel")
        side, mask = self._state["side"], self._state["mask"]
        inputs = self._state["decoder_inputs"]
        batch = inputs.shape[0]
        if side.shape[0] != batch:  # beam search: HF repeats each example's encoder output per beam
            side = side.repeat_interleave(batch // side.shape[0], dim=0)
            mask = None if mask is None else mask.repeat_interleave(batch // mask.shape[0], dim=0)
        taps = [self._taps["decoder"][i] for i in self.decoder.layers]
        hidden = self.decoder(inputs, self._state.get("decoder_mask"), taps, encoder=side, encoder_mask=mask)
        self._taps["decoder"] = {}
        output["last_hidden_state"] = self.up(hidden)  # what the frozen LM head reads
        return output


class _Tap:
    """Keeps backbone layer ``i``'s output for the side network (read-only)."""

    def __init__(self, side: LadderSideNetwork, stack: str, i: int):
        self.side, self.stack, self.i = side, stack, i

    def __call__(self, output) -> None:
        if self.side.enabled:
            self.side._taps[self.stack][self.i] = output[0] if isinstance(output, tuple) else output
