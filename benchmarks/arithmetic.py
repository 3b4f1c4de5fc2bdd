"""What pinning the CPU arithmetic costs (vladapter.utils.arithmetic), level by level.

Each level runs in a fresh process started with that level's environment (as the
`vladapter` entry point sets it before torch loads): 8 training steps of the toy ResNet CLIP
(batch 64, 64 px) and 30 of a tiny VL-T5 with full fine-tuning (batch 32, 20 text and 16
visual tokens, 12 target tokens). It reports each part's CPU seconds of the process
(time.process_time: less disturbed by other processes on a shared machine than wall time)
and a digest of the trained weights. Levels run interleaved, --repeats rounds; the table
gives the median of each and its ratio to native.

    .venv/bin/python benchmarks/arithmetic.py [--repeats 3] [--out benchmarks/out/arithmetic.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import REPO, emit_result, machine_description, markdown_table, run_child  # noqa: E402


def _digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for _, value in sorted(model.state_dict().items()):
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def measure() -> dict:
    """Child side: train both models from fixed seeds; CPU seconds and weight digests."""
    import time

    import torch

    from vladapter.features.toy_clip import build_model
    from vladapter.models import build_vl_model
    from vladapter.train.optim import build_optimizer

    torch.manual_seed(0)
    clip, _ = build_model("resnet", 200, image_size=64)
    optim = torch.optim.AdamW(clip.parameters(), lr=1e-3)
    pixels, ids = torch.randn(64, 3, 64, 64), torch.randint(5, 200, (64, 16))
    start = time.process_time()
    for _ in range(8):
        loss = clip(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, return_loss=True).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
    clip_s = time.process_time() - start

    model = build_vl_model("tiny-t5", pretrained=False, feat_dim=256, n_vis_tokens=16).train()
    optim = build_optimizer(model, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    vocab = model.vl_config["text_vocab"]
    batch = {"input_ids": torch.randint(10, vocab, (32, 20), generator=g),
             "attention_mask": torch.ones(32, 20, dtype=torch.long),
             "vis_feats": torch.randn(32, 16, 256, generator=g), "vis_mask": torch.ones(32, 16, dtype=torch.bool),
             "img_order": torch.zeros(32, 16, dtype=torch.long), "labels": torch.randint(10, vocab, (32, 12), generator=g)}
    start = time.process_time()
    for _ in range(30):
        loss = model(**batch, task="vqa").loss
        optim.zero_grad()
        loss.backward()
        optim.step()
    t5_s = time.process_time() - start
    return {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "clip_cpu_s": round(clip_s, 3), "clip_digest": _digest(clip),
            "t5_cpu_s": round(t5_s, 3), "t5_digest": _digest(model)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "arithmetic.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        emit_result(measure())
        return 0
    from vladapter.utils import arithmetic

    results: dict[str, list[dict]] = {level: [] for level in ("native", *[x for x in arithmetic.LEVELS if x != "native"])}
    for _ in range(args.repeats):
        for level in results:
            env = {**os.environ, arithmetic.ENV: level, "OMP_NUM_THREADS": "1"}
            arithmetic.pin(env)  # what the entry point does before torch loads
            results[level].append(run_child([__file__, "--child"], env=env))
    rows = []
    base = {k: statistics.median(r[k] for r in results["native"]) for k in ("clip_cpu_s", "t5_cpu_s")}
    for level, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("clip_cpu_s", "t5_cpu_s")}
        rows.append([level, runs[0]["capability"], med["clip_cpu_s"], round(med["clip_cpu_s"] / base["clip_cpu_s"], 2),
                     med["t5_cpu_s"], round(med["t5_cpu_s"] / base["t5_cpu_s"], 2),
                     " ".join(sorted({r["clip_digest"] + "/" + r["t5_digest"] for r in runs}))])
    table = markdown_table(["level", "ATen", "toy CLIP CPU s", "x native", "tiny-T5 CPU s", "x native",
                            "weights (CLIP/T5 digest)"], rows)
    print(machine_description())
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_description(), "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
