"""LST's side initialisation by structural pruning of the backbone (Fisher importance).

Importance of a backbone weight = its squared gradient of the LM loss, summed over N
training examples taken one at a time (the empirical Fisher information's diagonal), on
the backbone alone reading the text (as the backbone does under LST). Each side block is
then the pruned copy of its backbone layer:

- residual dimensions: one selection per stack (encoder, decoder), the top d/r by the
  importance summed over the stack's side layers (every weight row or column and LayerNorm
  entry on the residual stream), so the side stream is one consistent subspace;
- attention: per head, the top d_kv/r of its dimensions (q/k/v rows and o columns), so the
  side keeps every head;
- feed-forward: the top d_ff/r hidden units (input-projection rows and output-projection
  columns).

The chosen rows, the matching input columns, biases and LayerNorm entries are copied into
the side blocks; T5's relative position bias (per head) is copied whole; the side's final
LayerNorm (T5) / input LayerNorm (BART encoder) takes the stack's final / embedding
LayerNorm entries. Downsamplers, gates and the upsampler keep their fresh initialisation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn

from vladapter.errors import ConfigError
from vladapter.petl.slots import stack_path

RES, ENC_RES, FULL = "res", "enc_res", "full"
SIDE_INIT_FILE = "side_init.safetensors"
# in-process reuse across the seeds of one job: key -> side tensors
_CACHE: dict[str, dict[str, torch.Tensor]] = {}


def _roles(family: str, name: str) -> tuple[str, ...]:
    """The axis roles of a side-block parameter (by its name inside the block).

    RES: the stack's residual stream; ENC_RES: the encoder's (cross-attention keys and
    values); "attn0"/"attn1": the self / cross attention's inner dimensions; "ffn": the
    feed-forward's hidden units; FULL: copied whole.
    """
    parts = name.split(".")
    leaf, module = parts[-1], parts[-2]
    if family == "t5":
        if "relative_attention_bias" in name:
            return (FULL, FULL)
        if "layer_norm" in name:
            return (RES,)
        if "SelfAttention" in name or "EncDecAttention" in name:
            attn = "attn0" if "SelfAttention" in name else "attn1"
            if module == "o":
                return (RES, attn)
            source = ENC_RES if attn == "attn1" and module in ("k", "v") else RES
            return (attn, source)
        if module.startswith("wi"):
            return ("ffn", RES)
        if module == "wo":
            return (RES, "ffn")
    else:
        if "layer_norm" in name:
            return (RES,)
        if module in ("q_proj", "k_proj", "v_proj", "out_proj"):
            attn = "attn0" if parts[0] == "self_attn" else "attn1"
            if module == "out_proj":
                return (RES, attn) if leaf == "weight" else (RES,)
            source = ENC_RES if attn == "attn1" and module != "q_proj" else RES
            return (attn, source) if leaf == "weight" else (attn,)
        if module == "fc1":
            return ("ffn", RES) if leaf == "weight" else ("ffn",)
        if module == "fc2":
            return (RES, "ffn") if leaf == "weight" else (RES,)
    raise ConfigError(f"LST pruning does not know the parameter {name!r} of a {family} block")


def _stack_layers(model: nn.Module, stack: str) -> nn.ModuleList:
    module = model.get_submodule(stack_path(model.family, stack))
    return module.block if model.family == "t5" else module.layers


def fisher_importance(model: nn.Module, examples: Iterable[dict]) -> tuple[dict[str, torch.Tensor], int]:
    """Squared gradients of the LM loss, summed over ``examples`` (one example per batch),
    for every parameter of the backbone's layers and LayerNorms; (importance, examples used).

    The side network is switched off and the backbone reads the text only; the backbone's
    parameters are frozen again afterwards (nothing of it changes).
    """
    side = model.side
    lm = model.lm
    names = [n for n, _ in lm.named_parameters()
             if (".block." in n or ".layers." in n or "norm" in n) and "embed_tokens" not in n]
    params = dict(lm.named_parameters())
    chosen = [params[n] for n in names]
    importance = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in zip(names, chosen)}
    was_training = model.training
    model.eval()  # no dropout: the same examples give the same importance
    side.enabled = False
    n = 0
    try:
        for p in chosen:
            p.requires_grad_(True)
        embed = lm.get_input_embeddings()
        for batch in examples:
            ids = batch["input_ids"].to(model.device)
            labels = batch["labels"].to(model.device)
            with torch.no_grad():
                embeds = embed(ids)
            loss = lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"].to(model.device),
                      labels=labels, use_cache=False).loss
            grads = torch.autograd.grad(loss, chosen, allow_unused=True)
            for name, g in zip(names, grads):
                if g is not None:
                    importance[name] += g.float().square()
            n += 1
    finally:
        for p in chosen:
            p.requires_grad_(False)
        side.enabled = True
        model.train(was_training)
    if n == 0:
        raise ConfigError("LST's Fisher initialisation got no training examples")
    return importance, n


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, k).indices).values


def pruned_side_state(model: nn.Module, importance: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The side network's block and LayerNorm tensors pruned from the backbone (names as in
    ``model.side.state_dict()``)."""
    side, family = model.side, model.family
    lm_prefix = "lm."
    state: dict[str, torch.Tensor] = {}
    keep_res: dict[str, torch.Tensor] = {}
    for stack in ("encoder", "decoder"):
        side_stack = getattr(side, stack)
        layers = _stack_layers(model, stack)
        base = stack_path(family, stack)[len(lm_prefix):] + (".block" if family == "t5" else ".layers")
        width = side_stack.config.d_model
        # residual importance over the stack
        res_score = None
        per_layer = []
        for j, i in enumerate(side_stack.layers):
            scores: dict[str, torch.Tensor] = {}
            for name, _ in side_stack.blocks[j].named_parameters():
                roles = _roles(family, name)
                imp = importance.get(f"{base}.{i}.{name}")
                if imp is None:
                    continue
                for axis, role in enumerate(roles):
                    if role in (FULL, ENC_RES):
                        continue
                    other = tuple(a for a in range(imp.dim()) if a != axis)
                    s = imp.sum(dim=other) if other else imp
                    scores[role] = scores.get(role, 0) + s
            per_layer.append(scores)
            if RES in scores:
                res_score = scores[RES] if res_score is None else res_score + scores[RES]
        final_name = {"t5": f"{stack_path(family, stack)[len(lm_prefix):]}.final_layer_norm.weight",
                      "bart": f"{stack_path(family, stack)[len(lm_prefix):]}.layernorm_embedding.weight"}[family]
        if final_name in importance:
            res_score = res_score + importance[final_name]
        keep_res[stack] = _top(res_score, width)
        # inner dimensions per layer, then the copies
        for j, i in enumerate(side_stack.layers):
            layer = layers[i]
            keep = {RES: keep_res[stack], ENC_RES: keep_res.get("encoder")}
            for role, s in per_layer[j].items():
                if role.startswith("attn"):
                    heads = side_stack.config.num_heads if family == "t5" else side_stack.config.encoder_attention_heads
                    full_head = s.numel() // heads
                    side_head = full_head // model.side.lst.reduction_factor
                    per_head = s.view(heads, full_head)
                    keep[role] = torch.cat([h * full_head + _top(per_head[h], side_head) for h in range(heads)])
                elif role == "ffn":
                    d_ff = s.numel() // model.side.lst.reduction_factor
                    keep[role] = _top(s, d_ff)
            backbone = dict(layer.named_parameters())
            backbone.update({n: t for n, t in layers[0].named_parameters() if "relative_attention_bias" in n})
            for name, p in side_stack.blocks[j].named_parameters():
                t = backbone[name].detach()
                for axis, role in enumerate(_roles(family, name)):
                    if role != FULL:
                        t = t.index_select(axis, keep[role].to(t.device))
                if t.shape != p.shape:
                    raise ConfigError(f"LST pruning of {base}.{i}.{name} gave {tuple(t.shape)}, the side block "
                                      f"holds {tuple(p.shape)}")
                state[f"{stack}.blocks.{j}.{name}"] = t.clone()
        stack_module = model.get_submodule(stack_path(family, stack))
        if family == "t5":
            state[f"{stack}.final_norm.weight"] = stack_module.final_layer_norm.weight.detach()[keep_res[stack]].clone()
        elif stack == "encoder":
            ln = stack_module.layernorm_embedding
            state["encoder.input_norm.weight"] = ln.weight.detach()[keep_res[stack]].clone()
            state["encoder.input_norm.bias"] = ln.bias.detach()[keep_res[stack]].clone()
    return state


def initialise(model: nn.Module, examples: Callable[[int], Iterable[dict]], data_id: object,
               work: str | Path | None = None) -> dict:
    """Initialise ``model.side`` as its LST config says; returns what train.json records.

    ``fisher``: the pruned backbone, from the Fisher pass over ``examples(n)`` (the first
    ``n = fisher_examples`` training examples, one per batch; ``data_id`` names them). Its result is kept in ``work`` (a resumed run reads it back) and in
    this process (the next seed of the same base, data and options reuses it), keyed by
    everything it depends on.
    """
    from safetensors.torch import load_file

    from vladapter.utils.digest import state_digest

    side = model.side
    config = side.lst
    if config.init == "random":
        return {"init": "random"}
    key = hashlib.sha256(json.dumps({
        "base": state_digest(model.lm), "examples": config.fisher_examples, "data": data_id,
        "reduction_factor": config.reduction_factor, "layers": list(config.layers or []),
    }, sort_keys=True).encode()).hexdigest()
    path = Path(work) / SIDE_INIT_FILE if work is not None else None
    source = "computed"
    state = _CACHE.get(key)
    n = config.fisher_examples
    if state is not None:
        source = "reused"
    elif path is not None and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("key") == key:
            state, source = load_file(str(path)), "resumed"
            n = int(meta.get("examples", n))
    if state is None:
        importance, n = fisher_importance(model, examples(config.fisher_examples))
        state = pruned_side_state(model, importance)
        del importance
        if path is not None:
            from vladapter.utils.io import save_safetensors

            save_safetensors({k: v.contiguous().cpu() for k, v in state.items()}, path,
                             metadata={"key": key, "examples": str(n)})
    _CACHE[key] = {k: v.cpu() for k, v in state.items()}
    missing = side.load_state_dict({k: v.to(model.device) for k, v in state.items()}, strict=False).unexpected_keys
    if missing:
        raise ConfigError(f"LST pruning produced tensors the side network lacks: {missing[:5]}")
    return {"init": "fisher", "fisher_examples": n, "key": key, "source": source}
