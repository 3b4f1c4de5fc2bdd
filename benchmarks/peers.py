"""Our LoRA, DoRA and adapter against the peer libraries, on the same model and batch.

Three comparisons, each reported as a step-time ratio (ours / peer) and an output agreement:

- our `single_lora` against `peft`'s LoRA (same rank 128, alpha 32, dropout 0.1, same
  target projections, same trainable biases and visual embedding), both in this
  environment, on our VL model;
- our `dora` against `peft`'s DoRA (`use_dora=True`; rank 128, alpha 128, no dropout, the
  same targets; trainable: DoRA + biases + LayerNorms + visual embedding, DoRA's VL-BART set);
- our `single_adapter` against the `adapters` library's Houlsby adapter
  (`double_seq_bn`, bottleneck d/8, GELU, also after cross-attention), which pins an older
  transformers: it runs in its own virtualenv (created on first use under
  benchmarks/out/peers-venv, torch==2.13.0 first), on the same BART architecture with a
  trainable visual projection + LayerNorms in front, like our VL model. Weights and
  outputs cross between the environments as safetensors files.

Agreement: the same weights are copied into both implementations (adapter/LoRA weights
randomised so they matter), and the logits of one batch in eval mode are compared
(target: max abs difference <= 1e-5). Timing: ours and the peer each run in a fresh
process (its own peak RSS), both alive at once and stepping in turns, so that both see
the same background load (`_util.lockstep`); FLOPs per step are counted too.

    .venv/bin/python benchmarks/peers.py                       # bart-base, batch 16
    .venv/bin/python benchmarks/peers.py --comparisons lora --steps 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (REPO, LockstepChild, check, emit_result, lockstep, machine_description,  # noqa: E402
                   markdown_table, mib, run_child)

ADAPTERS_PIN = "adapters==1.3.0"
TORCH_PIN = "torch==2.13.0"  # the local CPU wheel; any other spec downloads CUDA builds
DEFAULT_VENV = REPO / "benchmarks/out/peers-venv"
DEFAULT_EXCHANGE = REPO / "benchmarks/out/peers-exchange"
AGREEMENT_TOL = 1e-5
TIME_TARGET, TIME_NOISE = 1.0, 1.05
LORA = dict(r=128, alpha=32, dropout=0.1)
DORA = dict(r=128, alpha=128, dropout=0.0)  # DoRA's VL-BART setting (our dora preset's defaults)
# (ours, peer) per comparison
SIDES = {"lora": ("ours-lora", "peft-lora"), "dora": ("ours-dora", "peft-dora"),
         "adapter": ("ours-adapter", "adapters-houlsby")}


# --------------------------------------------------------------------------- environment

def ensure_peers_venv(venv: Path) -> Path:
    """The virtualenv holding the `adapters` library (and its pinned transformers); its python.

    Created on first use: torch first (the local CPU wheel), then adapters + safetensors.
    """
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text().strip() == ADAPTERS_PIN:
        return python
    print(f"creating the peers environment in {venv} ({ADAPTERS_PIN}) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [TORCH_PIN], check=True)
    subprocess.run(pip + [ADAPTERS_PIN, "safetensors"], check=True)
    marker.write_text(ADAPTERS_PIN + "\n")
    return python


# --------------------------------------------------------------------------- models

def _ours(lm: str, preset: str | None, args):
    """Our VL model with ``preset`` applied (None: the bare base model)."""
    from train_step import IMAGE_TASKS, build

    if preset is None:
        from vladapter.models import build_vl_model

        return build_vl_model(lm, pretrained=False, feat_dim=args.feat_dim, n_vis_tokens=args.n_vis)
    return build(lm, preset, args.feat_dim, args.n_vis, tasks=IMAGE_TASKS)


def _visual_embedding_names(model) -> list[str]:
    return [f"visual.{name}" for name, _ in model.visual.named_parameters()]


def _peft_lora(base, dora: bool = False):
    """``base`` with peft's LoRA injected; trainable: LoRA + all biases + visual embedding,
    the same set as our single_lora. ``dora``: peft's DoRA, trainable as our dora preset
    (+ magnitudes and every LayerNorm of the LM)."""
    from peft import LoraConfig, inject_adapter_in_model

    from vladapter.petl.slots import is_layernorm

    setting = DORA if dora else LORA
    config = LoraConfig(r=setting["r"], lora_alpha=setting["alpha"], lora_dropout=setting["dropout"],
                        target_modules=_lora_targets(base), bias="none", use_dora=dora)
    vis = set(_visual_embedding_names(base))
    norms = {f"lm.{n}.{p}" for n, m in base.lm.named_modules() if is_layernorm(m)
             for p, _ in m.named_parameters(recurse=False)} if dora else set()
    model = inject_adapter_in_model(config, base)
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name or name.endswith(".bias") or name in vis or name in norms
    return model


def _lora_targets(model) -> list[str]:
    """Module paths of the projections our LoRA preset adapts (the paper's q, v targets)."""
    from vladapter.petl.lora import PAPER_TARGETS
    from vladapter.petl.slots import attention_linears

    return attention_linears(model, PAPER_TARGETS)


def _peer_model(config_json: Path, feat_dim: int, adapter: bool = True):
    """adapters-library BART behind our VL model's forward signature.

    The visual features go through a trainable Linear + LayerNorm and are appended to the
    token embeddings, as in our VL model; with ``adapter`` a Houlsby adapter is added and
    trained together with the LayerNorms (our single_adapter's trainable set).
    """
    import adapters
    import torch
    from adapters import DoubleSeqBnConfig
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig.from_dict(json.loads(config_json.read_text()))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = config
            self.backbone = BartForConditionalGeneration(config)
            d = config.d_model
            self.vis_proj = torch.nn.Sequential(torch.nn.Linear(feat_dim, d), torch.nn.LayerNorm(d))
            self.text_len = None
            self.backbone.model.encoder.embed_positions.register_forward_hook(self._text_positions_only)

        def _text_positions_only(self, module, args, output):
            # as in our VL-BART: learned positions for the text tokens only, none for the
            # visual tokens appended after them
            if self.text_len is None:
                return output
            keep = torch.arange(output.shape[-2], device=output.device) < self.text_len
            return output * keep.unsqueeze(-1).to(output.dtype)

        def forward(self, input_ids, attention_mask, vis_feats, vis_mask, img_order, labels=None, task=None):
            tokens = self.backbone.get_input_embeddings()(input_ids)
            embeds = torch.cat([tokens, self.vis_proj(vis_feats)], dim=1)
            mask = torch.cat([attention_mask, vis_mask.to(attention_mask.dtype)], dim=1)
            self.text_len = input_ids.shape[1]
            return self.backbone(inputs_embeds=embeds, attention_mask=mask, labels=labels)

    model = Model()
    if adapter:
        adapters.init(model.backbone)
        model.backbone.add_adapter("houlsby", config=DoubleSeqBnConfig(
            reduction_factor=8, non_linearity="gelu", cross_adapter=True))
        model.backbone.train_adapter("houlsby")  # freezes everything else
        for name, p in model.backbone.named_parameters():
            if "layernorm" in name.lower() or "layer_norm" in name.lower():
                p.requires_grad = True
    return model


# --------------------------------------------------------------------------- children

def child_time(args) -> dict:
    """Step time of one side (ours-lora | peft-lora | ours-adapter | adapters-houlsby)."""
    import torch
    from train_step import adamw, measure_model

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    side = args.side
    if side == "ours-lora":
        model = _ours(args.lm, "single_lora", args)
    elif side == "peft-lora":
        model = _peft_lora(_ours(args.lm, None, args))
    elif side == "ours-dora":
        model = _ours(args.lm, "dora", args)
    elif side == "peft-dora":
        model = _peft_lora(_ours(args.lm, None, args), dora=True)
    elif side == "ours-adapter":
        model = _ours(args.lm, "single_adapter", args)
    elif side == "adapters-houlsby":
        model = _peer_model(args.exchange / "config.json", args.feat_dim)
    else:
        raise ValueError(side)
    return {"side": side, **measure_model(model, args, adamw)}


def child_export(args) -> dict:
    """Main env: LoRA agreement with peft here; export what the adapters env needs."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.exchange.mkdir(parents=True, exist_ok=True)
    base = _ours(args.lm, None, args)
    batch = _batch(args, base)
    result = {**_lora_agreement(base, batch), **_lora_agreement(base, batch, dora=True)}
    with torch.no_grad():
        plain_logits = base.eval()(**batch, task="caption").logits

    backbone = _backbone(base)
    (args.exchange / "config.json").write_text(backbone.config.to_json_string())
    backbone_state = {k: v.detach().clone().contiguous() for k, v in backbone.state_dict().items()}
    ours = _apply(base, "single_adapter")
    _randomise_trainable(ours, "adapter")
    captured = _capture_backbone_inputs(ours, backbone, batch)
    save_file(backbone_state, str(args.exchange / "backbone.safetensors"))
    save_file({k: v.contiguous() for k, v in _houlsby_weights(ours).items()},
              str(args.exchange / "adapter.safetensors"))
    save_file(captured, str(args.exchange / "io.safetensors"))
    result["adapter_effect"] = (captured["logits"] - plain_logits).abs().max().item()
    return result


def child_adapters_agreement(args) -> dict:
    """Peers env: load our backbone + adapter weights into adapters' BART, compare logits."""
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = _peer_model(args.exchange / "config.json", args.feat_dim)
    backbone = model.backbone
    missing, unexpected = backbone.load_state_dict(load_file(str(args.exchange / "backbone.safetensors")),
                                                   strict=False)
    missing = [k for k in missing if "adapters." not in k]
    if missing or unexpected:
        raise RuntimeError(f"backbone weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    _load_houlsby(backbone, load_file(str(args.exchange / "adapter.safetensors")))
    io = load_file(str(args.exchange / "io.safetensors"))
    backbone.eval()
    model.text_len = args.text_len
    with torch.no_grad():
        logits = backbone(inputs_embeds=io["inputs_embeds"], attention_mask=io["attention_mask"],
                          decoder_input_ids=io["decoder_input_ids"]).logits
    return {"adapter_max_abs_diff": (logits - io["logits"]).abs().max().item()}


def _load_houlsby(backbone, weights: dict) -> None:
    """Copy canonical adapter weights ``{enc|dec}.{i}.{attn|cross|ffn}.{down|up}.{weight|bias}``
    into adapters' modules (attention_adapters / cross_attention_adapters / output_adapters)."""
    import torch

    where = {"attn": "attention_adapters", "cross": "cross_attention_adapters", "ffn": "output_adapters"}
    stack = {"enc": backbone.model.encoder.layers, "dec": backbone.model.decoder.layers}
    with torch.no_grad():
        for key, value in weights.items():
            side, layer, slot, proj, kind = key.split(".")
            adapter = getattr(stack[side][int(layer)], where[slot]).adapters["houlsby"]
            linear = adapter.adapter_down[0] if proj == "down" else adapter.adapter_up
            getattr(linear, kind).copy_(value)


# --------------------------------------------------------------------------- our model's pieces

def _batch(args, model):
    from train_step import synthetic_batch

    return synthetic_batch(model, args.batch_size, args.text_len, args.target_len, args.n_vis,
                           args.feat_dim, "cpu")


def _backbone(model):
    """The HF encoder-decoder inside our VL model."""
    return model.lm


def _apply(model, preset):
    from train_step import IMAGE_TASKS
    from vladapter import petl

    petl.apply(model, preset, tasks=IMAGE_TASKS)
    return model


def _randomise_trainable(model, marker: str) -> None:
    """Give the method's own weights random values so that they change the outputs
    (LoRA B and adapter up-projections start at zero)."""
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and marker in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def _capture_backbone_inputs(model, backbone, batch) -> dict:
    """Run ``model`` in eval mode on ``batch``; return what its HF backbone received
    (inputs_embeds, attention_mask, decoder_input_ids) and the logits it produced."""
    import torch

    seen = {}

    def hook(module, args, kwargs):
        seen.update({k: kwargs[k] for k in ("inputs_embeds", "attention_mask", "decoder_input_ids")
                     if kwargs.get(k) is not None})
        if "decoder_input_ids" not in seen and kwargs.get("labels") is not None:
            seen["decoder_input_ids"] = module.prepare_decoder_input_ids_from_labels(kwargs["labels"])

    handle = backbone.register_forward_pre_hook(hook, with_kwargs=True)
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**batch, task="caption").logits
    finally:
        handle.remove()
    return {**{k: v.detach().contiguous() for k, v in seen.items()}, "logits": logits.detach().contiguous()}


def _lora_agreement(base, batch, dora: bool = False) -> dict:
    """Max abs logit difference between our single_lora (``dora``: our dora) and peft's
    LoRA (DoRA) on copies of ``base`` (left untouched), with the same (random) weights, in
    eval mode; and the ``effect``, how far those weights move the logits from ``base``'s
    (the check that the agreement is not vacuous)."""
    import copy

    import torch

    method = "dora" if dora else "lora"
    ours = _apply(copy.deepcopy(base), "dora" if dora else "single_lora")
    _randomise_trainable(ours, f".{method}.")
    if dora:  # magnitudes away from ||W + sBA|| (random B and A changed the norms anyway)
        with torch.no_grad():
            for name, p in ours.named_parameters():
                if ".magnitude." in name:
                    p.mul_(1.5)
    peer = _peft_lora(copy.deepcopy(base), dora=dora)
    peer_state = peer.state_dict()
    ours_lora = _lora_weights_as_peft(ours, method)
    if set(ours_lora) != {k for k in peer_state if "lora_" in k}:
        raise RuntimeError("our LoRA and peft's adapt different modules")
    with torch.no_grad():
        for name, value in ours_lora.items():
            peer_state[name].copy_(value)
    for model in (base, ours, peer):
        model.eval()
    with torch.no_grad():
        plain = base(**batch, task="caption").logits
        a = ours(**batch, task="caption").logits
        b = peer(**batch, task="caption").logits
    base.train()
    return {f"{method}_max_abs_diff": (a - b).abs().max().item(),
            f"{method}_effect": (a - plain).abs().max().item()}


def _lora_weights_as_peft(model, method: str = "lora") -> dict:
    """Our shared LoRA (DoRA) weights under peft's names: ``<path>.lora.A.shared.weight`` ->
    ``<path>.lora_A.default.weight`` (same layout: A (r, in), B (out, r)); DoRA's
    ``<path>.dora.magnitude.shared.weight`` -> ``<path>.lora_magnitude_vector.default.weight``."""
    peer_name = {"A": "lora_A", "B": "lora_B", "magnitude": "lora_magnitude_vector"}
    out = {}
    for name, value in model.state_dict().items():
        if f".{method}." in name and ".shared." in name:
            path, rest = name.split(f".{method}.", 1)
            part = rest.split(".", 1)[0]
            out[f"{path}.{peer_name[part]}.default.weight"] = value
    return out


def _houlsby_weights(model) -> dict:
    """Our shared adapter weights under canonical names
    ``{enc|dec}.{layer}.{attn|cross|ffn}.{down|up}.{weight|bias}`` (see _load_houlsby)."""
    from vladapter.petl.base import SHARED
    from vladapter.petl.slots import slots

    short = {"encoder": "enc", "decoder": "dec", "self_attn": "attn", "cross_attn": "cross", "ffn": "ffn"}
    out = {}
    for slot in slots(model):
        adapter = model.get_submodule(slot.path).adapter
        for proj in ("down", "up"):
            linear = getattr(adapter, proj)[SHARED]
            for kind in ("weight", "bias"):
                key = f"{short[slot.stack]}.{slot.layer}.{short[slot.kind]}.{proj}.{kind}"
                out[key] = getattr(linear, kind).detach().clone()
    return out


# --------------------------------------------------------------------------- parent

def child_argv(args, mode: str, side: str | None = None) -> list[str]:
    argv = [Path(__file__).resolve(), "--child", mode, "--lm", args.lm, "--exchange", args.exchange]
    if side:
        argv += ["--side", side]
    for opt in ("batch_size", "text_len", "target_len", "n_vis", "feat_dim", "warmup", "threads"):
        value = getattr(args, opt)
        if value is not None:
            argv += [f"--{opt.replace('_', '-')}", str(value)]
    return argv


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lm", default="facebook/bart-base", help="BART architecture (default: %(default)s)")
    p.add_argument("--comparisons", nargs="+", choices=list(SIDES), default=list(SIDES),
                   help="which comparisons (default: all)")
    p.add_argument("--steps", type=int, default=6,
                   help="timed step pairs per comparison, ours and the peer in turns; 0: output "
                        "agreement only (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    p.add_argument("--text-len", type=int, default=20, help="(default: %(default)s)")
    p.add_argument("--target-len", type=int, default=20, help="(default: %(default)s)")
    p.add_argument("--n-vis", type=int, default=36, help="(default: %(default)s)")
    p.add_argument("--feat-dim", type=int, default=2048, help="(default: %(default)s)")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed steps after the probe step, which already warms up (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV,
                   help="virtualenv of the adapters library, created if missing (default: %(default)s)")
    p.add_argument("--exchange", type=Path, default=DEFAULT_EXCHANGE,
                   help="folder for the safetensors crossing environments (default: %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/out/peers.json", help="(default: %(default)s)")
    p.add_argument("--markdown", type=Path, default=REPO / "benchmarks/out/peers.md", help="(default: %(default)s)")
    p.add_argument("--child", choices=["time", "export", "adapters-agreement"], help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    # the defaults measure_model expects
    p.set_defaults(device="cpu", dtype="fp32", task="caption", peak_tflops=None, lockstep=True, repeats=0)


def run_comparisons(args) -> dict:
    """Agreement first (a mismatch makes the timing meaningless), then per comparison both
    sides in lockstep (see `_util.lockstep`): ``args.steps`` pairs of steps."""
    from tqdm import tqdm

    agreement = run_child(child_argv(args, "export"))
    peers_python = None
    if "adapter" in args.comparisons:
        peers_python = ensure_peers_venv(args.peers_venv)
        agreement.update(run_child(child_argv(args, "adapters-agreement"), python=peers_python))
    timings = {}
    if args.steps < 1:
        return {"agreement": agreement, "timings": timings}
    progress = tqdm(total=args.steps * len(args.comparisons), desc="peer benchmark (step pairs)", unit="pair")
    for comparison in args.comparisons:
        ours_side, peer_side = SIDES[comparison]
        children = []
        try:
            for side in (ours_side, peer_side):
                python = peers_python if side == "adapters-houlsby" else sys.executable
                children.append(LockstepChild(child_argv(args, "time", side), python=python))
            pairs = lockstep(*children, args.steps, progress)
            timings[comparison] = {"pairs_s": pairs, ours_side: children[0].finish(),
                                   peer_side: children[1].finish()}
        finally:
            for child in children:
                child.kill()
    progress.close()
    return {"agreement": agreement, "timings": timings}


def summarise(raw: dict, comparisons) -> list[dict]:
    rows = []
    for comparison in comparisons:
        ours_side, peer_side = SIDES[comparison]
        row = {"comparison": comparison, "ours": ours_side, "peer": peer_side,
               "max_abs_diff": raw["agreement"][f"{comparison}_max_abs_diff"],
               "effect": raw["agreement"][f"{comparison}_effect"]}
        timing = raw["timings"].get(comparison)
        if timing:
            ours, peer, pairs = timing[ours_side], timing[peer_side], timing["pairs_s"]
            row.update({
                "ours_step_s": statistics.median(a for a, _ in pairs),
                "peer_step_s": statistics.median(b for _, b in pairs),
                "time_ratio": statistics.median(a / b for a, b in pairs),
                "ours_trainable": ours["trainable"], "peer_trainable": peer["trainable"],
                "ours_gflops": ours["flops_per_step"] / 1e9, "peer_gflops": peer["flops_per_step"] / 1e9,
                "ours_peak_rss": ours["peak_rss_bytes"], "peer_peak_rss": peer["peak_rss_bytes"],
            })
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    headers = ["ours", "peer", "trainable ours / peer", "GFLOP/step ours / peer", "step s ours", "step s peer",
               "time x (ours/peer)",
               "peak RSS MiB ours / peer", "max abs logit diff (method's effect)", "time <= 1.0 (1.05 noise)",
               f"agree <= {AGREEMENT_TOL:g}"]
    out = []
    for r in rows:
        timed = "time_ratio" in r
        out.append([r["ours"], r["peer"],
                    f"{r['ours_trainable']:,} / {r['peer_trainable']:,}" if timed else "",
                    f"{r['ours_gflops']:.1f} / {r['peer_gflops']:.1f}" if timed else "",
                    r.get("ours_step_s"), r.get("peer_step_s"), r.get("time_ratio"),
                    f"{mib(r['ours_peak_rss']):.0f} / {mib(r['peer_peak_rss']):.0f}" if timed else "",
                    f"{r['max_abs_diff']:.2e} ({r['effect']:.2e})",
                    (check(r["time_ratio"] <= TIME_NOISE) + ("" if r["time_ratio"] <= TIME_TARGET else " (noise)"))
                    if timed else "",
                    check(r["max_abs_diff"] <= AGREEMENT_TOL and r["effect"] > 100 * AGREEMENT_TOL)])
    return markdown_table(headers, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        child = {"time": child_time, "export": child_export,
                 "adapters-agreement": child_adapters_agreement}[args.child]
        emit_result(child(args))
        return 0

    from vladapter.utils.io import write_json, write_text

    raw = run_comparisons(args)
    rows = summarise(raw, args.comparisons)
    cmd = "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = (f"Command: `{cmd.strip()}`\n\nMachine: {json.dumps(machine_description())}\n\n"
          f"{args.lm} architecture, batch {args.batch_size}, {args.n_vis} visual tokens x {args.feat_dim}, "
          f"{args.text_len} text / {args.target_len} target tokens, CPU fp32; ours and the peer alive at once, "
          f"stepping in turns: medians over {args.steps} step pairs, time x = median of the per-pair "
          f"ratios.\n\n" + table(rows) + "\n")
    write_json(args.out, {"machine": machine_description(), "rows": rows, "raw": raw})
    write_text(args.markdown, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
