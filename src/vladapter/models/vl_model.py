"""VL-T5 / VL-BART: an unmodified HF encoder-decoder fed text and visual token embeddings.

Encoder input = [soft prompts (when a prompt method is applied)] ++ [text token
embeddings] ++ [visual tokens]; the decoder cross-attends to the whole sequence. The HF
modules are used as they are: the model is called with ``inputs_embeds``, and PETL
methods hook into its modules by path (``vladapter.petl``). The per-call state those hooks
need (the batch's task key, where the text sits in the sequence) lives in one
:class:`ForwardContext` owned by the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vladapter.errors import ConfigError
from vladapter.models.specs import lm_spec
from vladapter.models.visual import VisualEmbedding, object_order

# VL-T5 adds 200 `<vis_extra_id_i>` token rows; visual token i of an image is embedded
# (object-order embedding) with row `text_vocab + i` of the language model's embedding.
N_VIS_EXTRA = 200
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "vl_config.json"


@dataclass
class ForwardContext:
    """Per-call state read by hooks inside the HF modules.

    task:      the batch's task key (routes per-task PETL modules); None outside a call
    text_span: (start, length) of the text tokens in the encoder sequence, or None
    """

    task: str | None = None
    text_span: tuple[int, int] | None = None

    @contextlib.contextmanager
    def use(self, **values: Any) -> Iterator["ForwardContext"]:
        old = {k: getattr(self, k) for k in values}
        for k, v in values.items():
            setattr(self, k, v)
        try:
            yield self
        finally:
            for k, v in old.items():
                setattr(self, k, v)

    def checkpoint_contexts(self):
        """``context_fn`` of torch.utils.checkpoint: the recomputation of a checkpointed layer
        runs in backward, after :meth:`use` has reset the values, so it gets the values of the
        forward it recomputes (its task's PETL modules, T5's text-only position bias)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return contextlib.nullcontext(), self.use(**values)


_HF_CLASSES = {"t5": "T5ForConditionalGeneration", "bart": "BartForConditionalGeneration"}


def _hf_class(family: str):
    import transformers  # lazy: the attribute imports only that family's modeling module

    return getattr(transformers, _HF_CLASSES[family])


class VLModel(nn.Module):
    """An HF T5/BART (``self.lm``) + :class:`VisualEmbedding` (``self.visual``).

    ``self.prompts`` is None, or a module mapping a batch size to ``(B, P, d_model)``
    soft prompts for the current task (set by the prompt-tuning method).
    """

    def __init__(self, lm: nn.Module, *, name: str, family: str, feat_dim: int, n_vis_tokens: int,
                 text_vocab: int, n_vis_extra: int = N_VIS_EXTRA, visual_norm: str = "layer",
                 visual_single_norm: bool = False):
        super().__init__()
        d_model = lm.config.d_model
        if lm.get_input_embeddings().num_embeddings != text_vocab + n_vis_extra:
            raise ConfigError(
                f"embedding has {lm.get_input_embeddings().num_embeddings} rows, expected text vocab "
                f"{text_vocab} + {n_vis_extra} <vis_extra_id> rows"
            )
        self.lm = lm
        self.visual = self._visual_embedding(feat_dim, d_model, visual_norm, visual_single_norm).to(lm.device)
        self.prompts: nn.Module | None = None
        self.generation_options: dict[str, Any] = {}  # GenerationConfig fields a method needs (LST: no cache)
        self.context = ForwardContext()
        self.vl_config = {
            "lm": name, "family": family, "feat_dim": feat_dim, "n_vis_tokens": n_vis_tokens,
            "text_vocab": text_vocab, "n_vis_extra": n_vis_extra,
        }
        if (visual_norm, visual_single_norm) != ("layer", False):  # a released layout (models.released)
            self.vl_config.update(visual_norm=visual_norm, visual_single_norm=visual_single_norm)
        # As in VL-T5 / VL-BART, only text tokens have positions; prompts and visual tokens
        # have none. BART adds learned positions to every encoder input and T5 a relative
        # position bias between every pair: hooks keep the text's and zero the rest.
        if family == "bart":
            self.lm.model.encoder.embed_positions.register_forward_hook(self._text_positions_only)
        else:
            first = self.lm.encoder.block[0].layer[0].SelfAttention
            first.relative_attention_bias.register_forward_hook(self._text_relative_bias_only)

    def reset_visual(self, feat_dim: int) -> None:
        """A fresh visual embedding for ``feat_dim``-d features (another backbone than the
        one this model was pre-trained on); the language model is untouched."""
        self.visual = self._visual_embedding(feat_dim, self.d_model, self.visual.norm_kind,
                                             self.visual.single_norm).to(self.device)
        self.vl_config["feat_dim"] = feat_dim

    def _visual_embedding(self, feat_dim: int, d_model: int, norm: str, single_norm: bool) -> VisualEmbedding:
        eps = getattr(self.lm.config, "layer_norm_epsilon", 1e-6)
        return VisualEmbedding(feat_dim, d_model, norm=norm, single_norm=single_norm, eps=eps)

    # --- properties ----------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self.vl_config["family"]

    @property
    def d_model(self) -> int:
        return self.lm.config.d_model

    @property
    def device(self) -> torch.device:
        return self.visual.img_order.weight.device

    def gradient_checkpointing_enable(self) -> None:
        """Recompute the language model's layer activations in backward (less memory). The
        recomputation sees this model's :class:`ForwardContext` as the forward did."""
        self.lm.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False, "context_fn": self.context.checkpoint_contexts})

    # --- encoder input -------------------------------------------------------------------
    def _text_positions_only(self, module, args, output):
        span = self.context.text_span
        if span is None:
            return output
        start, length = span
        total = output.shape[-2]
        pos = module.weight[module.offset: module.offset + length]
        return F.pad(pos, (0, 0, start, total - start - length)).unsqueeze(0).to(output.dtype)

    def _text_relative_bias_only(self, module, args, output):
        # output: (query, key, heads) bias of the whole encoder sequence
        span = self.context.text_span
        if span is None:
            return output
        start, length = span
        is_text = torch.zeros(output.shape[0], dtype=output.dtype, device=output.device)
        is_text[start:start + length] = 1
        return output * (is_text[:, None, None] * is_text[None, :, None])

    def embed_inputs(self, input_ids, attention_mask, vis_feats, vis_mask=None, img_order=None,
                     obj_order=None, boxes=None):
        """The encoder's ``inputs_embeds (B, L, d)``, ``attention_mask (B, L)`` and the
        text span ``(start, length)``. Reads ``self.context.task`` for per-task prompts."""
        batch, n_vis = vis_feats.shape[:2]
        if img_order is None:
            img_order = torch.zeros(batch, n_vis, dtype=torch.long, device=vis_feats.device)
        if obj_order is None:
            if n_vis > self.vl_config["n_vis_extra"]:
                raise ConfigError(f"{n_vis} visual tokens exceed the {self.vl_config['n_vis_extra']} "
                                  "<vis_extra_id> rows of the object-order embedding")
            obj_order = object_order(img_order, self.visual.img_order.num_embeddings)
        if vis_mask is None:
            vis_mask = torch.ones(batch, n_vis, dtype=torch.bool, device=vis_feats.device)
        embed = self.lm.get_input_embeddings()
        text = embed(input_ids)
        boxes = None if boxes is None else boxes.to(text.dtype)
        vis = self.visual(vis_feats.to(text.dtype), img_order, boxes,
                          obj_embeds=embed(obj_order + self.vl_config["text_vocab"]))
        parts, masks = [text, vis], [attention_mask.long(), vis_mask.long()]
        n_prefix = 0
        if self.prompts is not None:
            prefix = self.prompts(batch)
            n_prefix = prefix.shape[1]
            parts.insert(0, prefix.to(text.dtype))
            masks.insert(0, attention_mask.new_ones(batch, n_prefix, dtype=torch.long))
        embeds = torch.cat(parts, dim=1)
        limit = getattr(self.lm.config, "max_position_embeddings", None)
        if self.family == "bart" and embeds.shape[1] > limit:
            # BART computes positions for the whole sequence before our hook keeps the text's
            raise ConfigError(f"encoder input of {embeds.shape[1]} tokens ({n_prefix} prompts + "
                              f"{input_ids.shape[1]} text + {n_vis} visual) exceeds BART's {limit} "
                              "positions: shorten the text (the task's max_input_tokens)")
        return embeds, torch.cat(masks, dim=1), (n_prefix, input_ids.shape[1])

    # --- forward / generate --------------------------------------------------------------
    def forward(self, input_ids, attention_mask, vis_feats, vis_mask=None, img_order=None, labels=None,
                task: str | None = None, *, obj_order=None, boxes=None, decoder_input_ids=None,
                decoder_attention_mask=None):
        """Seq2seq forward. ``vis_feats (B, V, D)``, ``vis_mask (B, V)`` bool, ``img_order
        (B, V)`` long (NLVR2: 0/1), ``labels (B, T)`` with -100 padding. Returns the HF
        output: ``.loss`` (mean token cross-entropy, when labels are given), ``.logits``."""
        with self.context.use(task=task):
            embeds, mask, span = self.embed_inputs(input_ids, attention_mask, vis_feats, vis_mask,
                                                   img_order, obj_order, boxes)
            with self.context.use(text_span=span):
                labels = None if labels is None else labels.contiguous()  # HF views it flat
                return self.lm(inputs_embeds=embeds, attention_mask=mask, labels=labels,
                               decoder_input_ids=decoder_input_ids,
                               decoder_attention_mask=decoder_attention_mask,
                               use_cache=False)

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, vis_feats, vis_mask=None, img_order=None,
                 task: str | None = None, max_new_tokens: int = 20, num_beams: int = 1, *,
                 obj_order=None, boxes=None, **generate_kwargs) -> torch.Tensor:
        """Greedy (``num_beams=1``) or beam-search decoding with visual input.

        Returns generated ids ``(B, <= max_new_tokens)`` without the decoder start token,
        padded with the pad id after each sequence's end-of-sequence token.
        """
        from transformers import GenerationConfig

        cfg = self.lm.config
        gen_config = GenerationConfig(
            max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
            decoder_start_token_id=cfg.decoder_start_token_id, eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id, bos_token_id=getattr(cfg, "bos_token_id", None),
            **self.generation_options,
        )
        with self.context.use(task=task):
            embeds, mask, span = self.embed_inputs(input_ids, attention_mask, vis_feats, vis_mask,
                                                   img_order, obj_order, boxes)
            with self.context.use(text_span=span):
                out = self.lm.generate(inputs_embeds=embeds, attention_mask=mask,
                                       generation_config=gen_config, **generate_kwargs)
        return out[:, 1:]

    # --- whole-model checkpoints ---------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``model.safetensors`` (every parameter) + ``vl_config.json``, atomically."""
        from vladapter.utils.io import atomic_dir

        with atomic_dir(directory) as tmp:
            self.write_pretrained(tmp)

    def write_pretrained(self, folder: str | Path) -> None:
        """Write ``model.safetensors`` + ``vl_config.json`` into an existing (temporary) folder."""
        from vladapter.utils.io import save_model_safetensors

        folder = Path(folder)
        config = {**self.vl_config, "hf_config": self.lm.config.to_dict()}
        save_model_safetensors(self, folder / WEIGHTS_FILE, metadata={"format": "pt"})
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None) -> "VLModel":
        """Rebuild a model written by :meth:`save_pretrained` (no PETL modules in it)."""
        from safetensors.torch import load_model

        directory = Path(directory)
        config_path, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights.is_file():
            raise ConfigError(f"{directory} is not a VLModel folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}); "
                              "write one with VLModel.save_pretrained")
        config = json.loads(config_path.read_text())
        hf_config = dict(config.pop("hf_config"))
        hf_cls = _hf_class(config["family"])
        with torch.device(device or "cpu"):
            lm = hf_cls(hf_cls.config_class.from_dict(hf_config))
            model = cls(lm, name=config["lm"], family=config["family"], feat_dim=config["feat_dim"],
                        n_vis_tokens=config["n_vis_tokens"], text_vocab=config["text_vocab"],
                        n_vis_extra=config["n_vis_extra"], visual_norm=config.get("visual_norm", "layer"),
                        visual_single_norm=config.get("visual_single_norm", False))
        missing, unexpected = load_model(model, str(weights), strict=False)
        if missing or unexpected:
            raise ConfigError(f"{weights} does not fit the model described by {config_path}: "
                              f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]} "
                              "(PETL checkpoints load with vladapter.petl.load)")
        return model


def build_vl_model(lm: str, feat_dim: int, n_vis_tokens: int, pretrained: bool = False,
                   vocab_size: int | None = None, n_vis_extra: int = N_VIS_EXTRA,
                   device: str | torch.device | None = None) -> VLModel:
    """A VL model around the HF model ``lm`` (see ``resources/models/``).

    pretrained:  load the checkpoint's weights (a published name such as ``t5-base`` in any
                 spelling, or a checkpoint folder; offline it must be in the HF cache or
                 the folder); else the architecture is built from its config with fresh weights.
    vocab_size:  size of the text tokenizer (default: the architecture's vocabulary);
                 the embedding gets ``vocab_size + n_vis_extra`` rows.
    device:      where to build; ``"meta"`` builds without memory (parameter counting).
    """
    spec = lm_spec(lm)
    text_vocab = int(vocab_size or spec.config["vocab_size"])
    hf_cls = _hf_class(spec.family)
    with torch.device(device or "cpu"):
        if pretrained:
            if spec.checkpoint is None:
                raise ConfigError(f"{lm} is a toy architecture with no published weights; use pretrained=False")
            model = load_checkpoint(hf_cls, spec.checkpoint)
            model.resize_token_embeddings(text_vocab + n_vis_extra, mean_resizing=False)
        else:
            model = hf_cls(spec.hf_config(vocab_size=text_vocab + n_vis_extra))
        return VLModel(model, name=spec.name, family=spec.family, feat_dim=feat_dim,
                       n_vis_tokens=n_vis_tokens, text_vocab=text_vocab, n_vis_extra=n_vis_extra)


def load_checkpoint(hf_cls, checkpoint: str):
    """``hf_cls.from_pretrained`` of a checkpoint folder or hub id (any spelling, found in the
    local HF cache; downloaded only when online), in float32 whatever dtype it was saved in."""
    from vladapter.models.checkpoints import find_checkpoint

    folder = find_checkpoint(checkpoint)
    try:
        return hf_cls.from_pretrained(str(folder or checkpoint), dtype=torch.float32)
    except OSError as e:
        raise ConfigError(f"cannot load the weights of {checkpoint} from {folder or 'the hub'} "
                          f"({str(e).splitlines()[0]}); the folder needs model.safetensors (or the HF cache "
                          "the whole snapshot)") from None
