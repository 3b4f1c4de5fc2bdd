"""Generation cost of LST, which decodes without a KV cache, against a method that keeps one.

LST's side network reads every backbone decoder layer's output at every position, so it
generates with ``use_cache=False`` (vladapter.petl.lst): each new token recomputes both
decoders over the whole prefix. This measures what that costs, side by side in one
process on the same inputs: beam-search caption decoding (the paper's 5 beams, up to
--tokens new tokens) with single_adapter (cache, HF's default), single_adapter without the
cache, and LST. Random weights (architectures built from their configs): every sequence
runs to --tokens (min_new_tokens), so the work per call is the same for every model.

    .venv/bin/python benchmarks/generate.py --lm facebook/bart-base
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import machine_description, markdown_table, time_call  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lm", default="facebook/bart-base")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--beams", type=int, default=5)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "generate.json")
    args = p.parse_args(argv)

    import torch

    from vladapter import petl
    from vladapter.models import build_vl_model

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 30000, (args.batch_size, 20), generator=g)
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids),
                  vis_feats=torch.randn(args.batch_size, 36, 2048, generator=g))
    rows, results = [], {}
    for name, preset, cache in (("single_adapter", "single_adapter", True),
                                ("single_adapter, no cache", "single_adapter", False),
                                ("lst (no cache)", "lst", None)):
        model = petl.apply(build_vl_model(args.lm, feat_dim=2048, n_vis_tokens=36), preset,
                           tasks=["vqa", "gqa", "nlvr", "caption"]).eval()
        kwargs = dict(task="caption", max_new_tokens=args.tokens, num_beams=args.beams, min_new_tokens=args.tokens)
        if cache is False:
            kwargs["use_cache"] = False
        timing = time_call(lambda: model.generate(**inputs, **kwargs), warmup=0, repeats=args.repeats)
        results[name] = timing["median_s"]
        rows.append([name, timing["median_s"], timing["median_s"] / results["single_adapter"]])
    table = markdown_table(["method", "generate s", "x single_adapter (cache)"], rows)
    print(f"{args.lm}, batch {args.batch_size}, {args.beams} beams, {args.tokens} new tokens\n\n{table}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_description(), "args": {k: str(v) for k, v in vars(args).items()},
                                    "seconds": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
