"""Training-step cost of every PETL preset as a ratio to full fine-tuning.

For each language model architecture (random weights, built from its config: nothing is
downloaded) and each method preset, one fresh process builds the VL model, applies the
preset, and times full training steps (forward + backward + AdamW step + zero_grad) on a
synthetic batch of the paper's image-text sizes: 36 visual tokens of 2048-d (CLIP RN101
grid), 20 text tokens, 20 caption target tokens. It reports

- step time (median of --repeats after --warmup) and achieved model FLOP/s,
- peak memory: on CUDA, torch's max_memory_allocated; on CPU, the peak of live tensor
  bytes over one full step (torch's MemTracker: every tensor an op allocates, plus the
  model, optimiser state and batch), split into weights, gradients, optimiser state and
  activations/temporaries: the CPU counterpart of max_memory_allocated. The child's peak RSS
  as well, which adds what every process holds (Python, torch, transformers, allocator
  slack). With --batch-sizes, a memory-vs-batch table: activations grow with the batch,
  weights do not.
- optimiser-state bytes and the gradient bytes, and the number of frozen parameters that
  received a gradient (must be 0: frozen parameters cost nothing in the optimiser),

and, in the parent, each as a ratio to full fine-tuning measured in the same run.

    .venv/bin/python benchmarks/train_step.py --lms facebook/bart-base --presets single_adapter
    .venv/bin/python benchmarks/train_step.py                     # every preset, bart-base + t5-base
    .venv/bin/python benchmarks/train_step.py --device cuda --dtype bf16 --peak-tflops 989

The markdown table goes to stdout and --markdown; raw results to --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import (REPO, LockstepChild, check, emit_result, live_tensors, machine_description, markdown_table,  # noqa: E402
                   lockstep, mib, optimizer_state_bytes, peak_rss_bytes, run_child, serve_steps,
                   time_call)

IMAGE_TASKS = ["vqa", "gqa", "nlvr", "caption"]
FULL = "full_finetuning"
# The benchmark's targets (CPU, batch 16): the lms each holds for, step time and peak memory
# as ratios to full fine-tuning. LST (its backward never enters the backbone) on both lms.
TARGET_LM = "facebook/bart-base"
TARGET_LMS = {"single_adapter": (TARGET_LM,), "lst": (TARGET_LM, "t5-base")}
TARGET_TIME = {"single_adapter": 0.6, "lst": 0.35}
TARGET_MEMORY = {"single_adapter": 0.6, "lst": 0.40}
STATE_TOLERANCE = 0.01  # optimiser-state ratio within 1% of the stepped fraction (below)


# --------------------------------------------------------------------------- child side

def build(lm: str, preset: str, feat_dim: int, n_vis_tokens: int, tasks=IMAGE_TASKS):
    """The VL model of ``lm`` (random weights) with ``preset`` applied, in train mode."""
    from vladapter import petl
    from vladapter.models import build_vl_model

    model = build_vl_model(lm, pretrained=False, feat_dim=feat_dim, n_vis_tokens=n_vis_tokens)
    if preset != FULL:
        petl.apply(model, preset, tasks=tasks)
    return model.train()


def synthetic_batch(model, batch_size: int, text_len: int, target_len: int, n_vis: int,
                    feat_dim: int, device, seed: int = 0) -> dict:
    """A batch of the paper's shapes with random token ids and features."""
    import torch

    g = torch.Generator().manual_seed(seed)
    vl_config = getattr(model, "vl_config", None)
    vocab = vl_config["text_vocab"] if vl_config else model.config.vocab_size
    # ids from a low range: every tokenizer has them, no special-token semantics needed
    hi = min(vocab, 30000)
    batch = {
        "input_ids": torch.randint(10, hi, (batch_size, text_len), generator=g),
        "attention_mask": torch.ones(batch_size, text_len, dtype=torch.long),
        "vis_feats": torch.randn(batch_size, n_vis, feat_dim, generator=g),
        "vis_mask": torch.ones(batch_size, n_vis, dtype=torch.bool),
        "img_order": torch.zeros(batch_size, n_vis, dtype=torch.long),
        "labels": torch.randint(10, hi, (batch_size, target_len), generator=g),
    }
    return {k: v.to(device) for k, v in batch.items()}


def adamw(model):
    """AdamW over the trainable parameters only (frozen ones get no state at all)."""
    import torch

    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, eps=1e-6,
                             weight_decay=0.01)


def measure(args) -> dict:
    """One preset, one process: build the model, then `measure_model`."""
    import torch

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    from vladapter.train.optim import build_optimizer

    model = build(args.lm, args.preset, args.feat_dim, args.n_vis)
    # the trainer's own optimiser (AdamW, no decay on biases/norms): what training runs
    return {"lm": args.lm, "preset": args.preset,
            **measure_model(model, args, lambda m: build_optimizer(m, lr=1e-4))}


def measure_model(model, args, optimizer_factory=adamw) -> dict:
    """Time training steps of ``model`` on a synthetic batch of ``args``' shapes.

    ``model(**batch, task=...)`` must return an object with ``.loss``. One probe step first
    counts FLOPs (forward + backward), the gradient bytes and the frozen parameters that
    received a gradient (and warms up: allocator, optimiser state); then ``args.warmup``
    untimed and ``args.repeats`` timed steps.
    Only needs torch: the peers' environment runs it too.
    """
    import contextlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = model.to(device).train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    batch = synthetic_batch(model, args.batch_size, args.text_len, args.target_len, args.n_vis,
                            args.feat_dim, device)
    optimizer = optimizer_factory(model)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if args.dtype == "bf16" else contextlib.nullcontext())
    rss_model = peak_rss_bytes()

    def loss_of():
        with autocast:
            loss = model(**batch, task=args.task).loss
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()}")
        return loss

    def forward_backward():
        loss_of().backward()

    def step():
        forward_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        forward_backward()
    flops = counter.get_total_flops()
    frozen_with_grad = sum(1 for p in model.parameters() if not p.requires_grad and p.grad is not None)
    grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                     if p.grad is not None)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state_bytes = optimizer_state_bytes(optimizer)
    # one more full step, its tensors tracked (untimed: tracking every op slows it down)
    peak_tensors = None if cuda else peak_tensor_bytes(model, optimizer, batch, loss_of)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sync = torch.cuda.synchronize if cuda else None
    if getattr(args, "lockstep", False):  # the parent decides when each step runs
        for _ in range(args.warmup):
            step()
        times = serve_steps(step, sync)
        timing = {"median_s": statistics.median(times) if times else float("nan"), "times_s": times}
    else:
        timing = time_call(step, warmup=args.warmup, repeats=args.repeats, sync=sync)
    result = {
        "device": args.device, "dtype": args.dtype, "batch_size": args.batch_size,
        "trainable": trainable, "total": total,
        "step_s": timing["median_s"], "step_times_s": timing["times_s"],
        "flops_per_step": flops, "flops_per_s": flops / timing["median_s"],
        "optimizer_state_bytes": state_bytes, "grad_bytes": grad_bytes,
        "frozen_params_with_grad": frozen_with_grad,
        "rss_after_build_bytes": rss_model, "peak_rss_bytes": peak_rss_bytes(),
    }
    if cuda:
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    else:
        result["peak_tensor_bytes"], result["peak_tensor_parts"] = peak_tensors
    if args.peak_tflops:
        result["mfu"] = result["flops_per_s"] / (args.peak_tflops * 1e12)
    return result


def peak_tensor_bytes(model, optimizer, batch, loss_of) -> tuple[int, dict[str, int]]:
    """The peak of live tensor bytes over one training step, and what held them at the peak.

    Counts the tensors that exist before (weights and buffers, optimiser state, the batch)
    and every tensor an operator allocates in the step's forward, backward (gradients,
    activation gradients) and optimiser update until it is freed: what CUDA's
    ``max_memory_allocated`` measures on a GPU, without the process's runtime.
    """
    import itertools

    tracker = live_tensors()
    tracker.track("weights", itertools.chain(model.parameters(), model.buffers()))
    tracker.track("optimizer state", (v for s in optimizer.state.values() for v in s.values()
                                      if hasattr(v, "untyped_storage")))
    tracker.track("batch", batch.values())
    with tracker:
        tracker.phase = "forward (activations)"
        loss = loss_of()
        tracker.phase = "backward (gradients, temporaries)"
        loss.backward()
        del loss
        tracker.phase = "optimizer update"
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tracker.peak, tracker.at_peak


# --------------------------------------------------------------------------- parent side

def all_presets() -> list[str]:
    from vladapter import petl

    names = list(petl.PRESETS)
    return [FULL] + [n for n in names if n != FULL]


def child_argv(args, lm: str, preset: str) -> list[str]:
    argv = [Path(__file__).resolve(), "--child", "--lm", lm, "--preset", preset]
    for opt in ("device", "dtype", "batch_size", "text_len", "target_len", "n_vis", "feat_dim",
                "warmup", "repeats", "threads", "task", "peak_tflops"):
        value = getattr(args, opt)
        if value is not None:
            argv += [f"--{opt.replace('_', '-')}", str(value)]
    return argv + (["--lockstep"] if args.lockstep else [])


def run_lockstep(args, lm: str, presets: list[str], progress) -> list[dict]:
    """Full fine-tuning and each other preset alive at once, stepping in turns
    (`_util.lockstep`); each result gains ``paired_time_ratio``, the median of its per-pair
    step-time ratios against full fine-tuning."""
    full = LockstepChild(child_argv(args, lm, FULL))
    results, full_times = [], []
    try:
        for preset in presets[1:]:
            child = LockstepChild(child_argv(args, lm, preset))
            try:
                pairs = lockstep(full, child, args.repeats, progress)
                result = child.finish()
            finally:
                child.kill()
            full_times += [a for a, _ in pairs]
            result["paired_time_ratio"] = statistics.median(b / a for a, b in pairs)
            results.append(result)
        return [full.finish()] + results
    finally:
        full.kill()


def with_ratios(results: list[dict]) -> list[dict]:
    """Add ``*_ratio`` fields against the full fine-tuning result of the same lm."""
    full = {(r["lm"], r.get("batch_size")): r for r in results if r["preset"] == FULL}
    memory_key = memory_measure(results)[0]
    out = []
    for r in results:
        f = full.get((r["lm"], r.get("batch_size")))
        r = dict(r)
        if f is not None:
            r["trainable_fraction"] = r["trainable"] / f["trainable"]
            # what one step of this batch's task trains: per-task modules of the other tasks
            # get no gradient, so AdamW holds no state for them either (their state appears
            # when their task's batches come; over a multi-task epoch it is the trainable
            # fraction). The gradient bytes say exactly which parameters stepped.
            r["stepped_fraction"] = r["grad_bytes"] / f["grad_bytes"]
            r["time_ratio"] = r.get("paired_time_ratio", r["step_s"] / f["step_s"])
            r["memory_ratio"] = r[memory_key] / f[memory_key]
            r["rss_ratio"] = r["peak_rss_bytes"] / f["peak_rss_bytes"]
            r["state_ratio"] = r["optimizer_state_bytes"] / f["optimizer_state_bytes"]
            r["flops_ratio"] = r["flops_per_step"] / f["flops_per_step"]
            r["state_ok"] = (r["frozen_params_with_grad"] == 0 and
                             abs(r["state_ratio"] - r["stepped_fraction"])
                             <= STATE_TOLERANCE * r["stepped_fraction"])
        out.append(r)
    return out


def memory_measure(results: list[dict]) -> tuple[str, str]:
    """The result key of the peak memory the targets use, and its column name: CUDA's max
    allocated, else the peak of live tensors on CPU, else (results of older runs) peak RSS."""
    for key, name in (("peak_cuda_bytes", "peak CUDA"), ("peak_tensor_bytes", "peak tensors")):
        if key in results[0]:
            return key, name
    return "peak_rss_bytes", "peak RSS"


def table(results: list[dict]) -> str:
    key, name = memory_measure(results)
    rss = key != "peak_rss_bytes"
    headers = ["lm", "preset", "trainable %", "stepped x", "step s", "time x", "GFLOP/s", f"{name} MiB", "memory x",
               "optim. state MiB", "state x", "state x = stepped x", "target"]
    if rss:  # the whole process as well
        headers[9:9] = ["peak RSS MiB", "RSS x"]
    if any("mfu" in r for r in results):
        headers.insert(6, "MFU")
    rows = []
    for r in results:
        targets = []
        if r["lm"] in TARGET_LMS.get(r["preset"], ()) and "time_ratio" in r:
            for what, ratio, limits in (("time", "time_ratio", TARGET_TIME), ("mem", "memory_ratio", TARGET_MEMORY)):
                if r["preset"] in limits:
                    targets.append(f"{what}<={limits[r['preset']]}: {check(r[ratio] <= limits[r['preset']])}")
        row = [r["lm"], r["preset"], 100 * r["trainable"] / r["total"], r.get("stepped_fraction"), r["step_s"],
               r.get("time_ratio"), r["flops_per_s"] / 1e9,
               mib(r[key]), r.get("memory_ratio"),
               mib(r["optimizer_state_bytes"]), r.get("state_ratio"),
               check(r["state_ok"]) if "state_ok" in r else "", "; ".join(targets)]
        if rss:
            row[9:9] = [mib(r["peak_rss_bytes"]), r.get("rss_ratio")]
        if "mfu" in headers:
            row.insert(6, r.get("mfu"))
        rows.append(row)
    return markdown_table(headers, rows)


def memory_table(results: list[dict]) -> str:
    """Peak memory per lm and preset (rows) at each batch size (columns), with its ratio to
    full fine-tuning at the same batch."""
    key, name = memory_measure(results)
    sizes = sorted({r["batch_size"] for r in results})
    cells: dict[tuple[str, str], dict[int, str]] = {}
    for r in results:
        ratio = r.get("memory_ratio")
        cells.setdefault((r["lm"], r["preset"]), {})[r["batch_size"]] = (
            f"{mib(r[key]):.0f}" + ("" if ratio is None or r["preset"] == FULL else f" ({ratio:.2f}x)"))
    headers = ["lm", "preset"] + [f"batch {b}: {name} MiB (x full FT)" for b in sizes]
    return markdown_table(headers, [[lm, preset] + [c.get(b, "") for b in sizes] for (lm, preset), c in cells.items()])


def peak_parts_table(results: list[dict]) -> str:
    """What the CPU peak of live tensors holds at its moment: weights, gradients, optimiser
    state, activations and temporaries (MiB)."""
    rows = [r for r in results if "peak_tensor_parts" in r]
    parts = list(dict.fromkeys(p for r in rows for p in r["peak_tensor_parts"]))
    headers = ["lm", "preset", "batch", "peak tensors MiB"] + [f"{p} MiB" for p in parts]
    return markdown_table(headers, [[r["lm"], r["preset"], r["batch_size"], mib(r["peak_tensor_bytes"])]
                                    + [mib(r["peak_tensor_parts"].get(p, 0)) for p in parts] for r in rows])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lms", nargs="+", default=["facebook/bart-base", "t5-base"],
                   help="language-model architectures (random weights; default: %(default)s)")
    p.add_argument("--presets", nargs="+", default=None,
                   help="PETL presets (default: all of vladapter.petl.PRESETS); "
                        "full_finetuning is always measured as the reference")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="bf16 = torch.autocast mixed precision (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="(default: %(default)s)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help="measure at each of these batch sizes instead (adds the memory-vs-batch table)")
    p.add_argument("--text-len", type=int, default=20, help="text tokens (default: %(default)s)")
    p.add_argument("--target-len", type=int, default=20, help="caption target tokens (default: %(default)s)")
    p.add_argument("--n-vis", type=int, default=36, help="visual tokens (default: %(default)s)")
    p.add_argument("--feat-dim", type=int, default=2048, help="visual feature size (default: %(default)s)")
    p.add_argument("--task", default="caption", help="task key routed per batch (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed steps after the probe step, which already warms up (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps; median reported (default: %(default)s)")
    p.add_argument("--lockstep", action="store_true",
                   help="time each preset in turns with full fine-tuning (two live processes, one step each, "
                        "alternating): the time ratio is the median of the per-pair ratios, robust to a "
                        "machine whose load changes (--repeats pairs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak TFLOP/s for MFU (e.g. 989 for H100 SXM bf16 dense)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/out/train_step.json",
                   help="raw results JSON (default: %(default)s)")
    p.add_argument("--markdown", type=Path, default=REPO / "benchmarks/out/train_step.md",
                   help="markdown table (default: %(default)s)")
    p.add_argument("--from-json", type=Path, default=None,
                   help="re-render the table from an earlier --out JSON instead of measuring")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lm", help=argparse.SUPPRESS)
    p.add_argument("--preset", help=argparse.SUPPRESS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        emit_result(measure(args))
        return 0

    from tqdm import tqdm

    from vladapter.utils.io import write_json, write_text

    if args.from_json:  # the measurements of an earlier run, ratios and table recomputed
        earlier = json.loads(args.from_json.read_text())
        machine, results = earlier["machine"], earlier["results"]
        cmd = earlier.get("command", f"python benchmarks/train_step.py (from {args.from_json})")
    else:
        presets = args.presets or all_presets()
        presets = [FULL] + [p for p in presets if p != FULL]
        sizes = args.batch_sizes or [args.batch_size]
        jobs = [(lm, preset, b) for lm in args.lms for b in sizes for preset in presets]
        results = []
        if args.lockstep:  # per lm and batch: full fine-tuning steps in turns with each preset
            progress = tqdm(total=len(jobs) * args.repeats, desc="train-step benchmark (step pairs)", unit="pair")
            for lm in args.lms:
                for b in sizes:
                    args.batch_size = b
                    results += run_lockstep(args, lm, presets, progress)
            progress.close()
        else:
            for lm, preset, b in tqdm(jobs, desc="train-step benchmark", unit="run"):
                args.batch_size = b
                results.append(run_child(child_argv(args, lm, preset)))
        machine = machine_description()
        cmd = "python benchmarks/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = with_ratios(results)
    sizes = sorted({r["batch_size"] for r in results})
    md = (f"Command: `{cmd.strip()}`\n\nMachine: {json.dumps(machine)}\n\n"
          f"Batch {', '.join(map(str, sizes))}, {args.n_vis} visual tokens x {args.feat_dim}, {args.text_len} text "
          f"tokens, {args.target_len} target tokens, {args.device} {args.dtype}; ratios (x) against "
          f"full fine-tuning of the same lm and batch in this run.\n\n" + table(results) + "\n")
    if len(sizes) > 1:
        md += "\nPeak memory by batch size:\n\n" + memory_table(results) + "\n"
    if "peak_tensor_parts" in results[0]:
        md += "\nWhat the peak of live tensors holds at its moment:\n\n" + peak_parts_table(results) + "\n"
    write_json(args.out, {"machine": machine, "command": cmd.strip(), "results": results})
    write_text(args.markdown, md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
