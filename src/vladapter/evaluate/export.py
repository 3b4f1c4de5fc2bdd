"""A trained run as a self-contained folder to share or push to a hub (`vladapter export`).

    vladapter export --model models/t5-base/single_adapter --out exports/t5-base-single_adapter

writes (atomically)::

    <out>/README.md                   model card: method, % params, scores per task and seed, config,
                                      the commands that made it and that evaluate it again
    <out>/export.json                 what the folder holds: run, method, the base it expects (name
                                      and the sha256 of its frozen weights), files with sha256
    <out>/metrics.json                the run's metrics (`vladapter evaluate`), when they exist
    <out>[/seed-<n>]/adapter.safetensors, method.json, train.json
                                      the trained tensors only, as `vladapter train` wrote them

The folder is a run folder: ``vladapter evaluate --model <out>`` loads it back onto its base
and scores it (every seed it holds); ``--base DIR`` names where the base lives on this machine
(a VL pre-trained backbone folder), and a base whose frozen weights differ from the recorded
sha256 is refused. Nothing but safetensors and JSON is written or read.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from vladapter.errors import ConfigError
from vladapter.utils.io import file_sha256

EXPORT_FILE = "export.json"
FORMAT = "vladapter-export/1"
RUN_FILES = ("adapter.safetensors", "method.json", "train.json")



def run_folders(model_dir: Path) -> dict[int | None, Path]:
    """{seed: folder} of a finished run: itself, or its seed-<n>/ folders."""
    if (model_dir / "train.json").is_file():
        return {None: model_dir}
    seeds = {}
    for folder in sorted(model_dir.glob("seed-*")):
        if folder.name[5:].isdigit() and (folder / "train.json").is_file():
            seeds[int(folder.name[5:])] = folder
    if not seeds:
        raise ConfigError(f"{model_dir} is not a finished training run (no train.json, no seed-<n>/train.json); "
                          "train it first (vladapter train)")
    return dict(sorted(seeds.items()))


def read_export(folder: str | Path) -> dict | None:
    """The export.json of an exported run folder, or None for an ordinary run folder."""
    path = Path(folder) / EXPORT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ConfigError(f"{path}: format {data.get('format')!r} is not {FORMAT}; export it again with this version")
    return data


def export_run(model_dir: str | Path, out: str | Path, metrics: str | Path | None = None) -> dict:
    """Write the export folder of the run in ``model_dir`` (see the module docstring)."""
    from vladapter.utils.io import atomic_dir

    model_dir = Path(model_dir)
    folders = run_folders(model_dir)
    infos = {seed: json.loads((f / "train.json").read_text()) for seed, f in folders.items()}
    first = next(iter(infos.values()))
    cfg = first["config"]
    bases = {info.get("base_state") for info in infos.values()}
    if len(bases) != 1 or None in bases:
        raise ConfigError(f"{model_dir}: the seeds were trained on different bases (or train.json has no "
                          "base_state): retrain the run with this version")
    metrics_data = None
    if metrics is not None:
        metrics_path = Path(metrics)
        if not metrics_path.is_file():
            raise ConfigError(f"metrics {metrics_path} not found; run `vladapter evaluate --model {model_dir}` "
                              "first, or leave --metrics out")
        metrics_data = json.loads(metrics_path.read_text())
    seeds = [s for s in folders if s is not None]
    manifest = {
        "format": FORMAT, "run": model_dir.name, "lm": cfg["lm"], "method": cfg["method"],
        "tasks": list(cfg["tasks"]), "seeds": seeds or None, "params": first.get("params"),
        "base": {"lm": cfg["lm"], "init": cfg.get("init"), "random_init": cfg.get("random_init", False),
                 "sha256": bases.pop(), "what": "sha256 of the frozen weights (vladapter.utils.digest.state_digest)"},
        "files": {},
    }
    with atomic_dir(out) as tmp:
        for seed, folder in folders.items():
            dest = tmp if seed is None else tmp / f"seed-{seed}"
            dest.mkdir(exist_ok=True)
            for name in RUN_FILES:
                shutil.copyfile(folder / name, dest / name)
                rel = (dest / name).relative_to(tmp).as_posix()
                manifest["files"][rel] = file_sha256(dest / name)
        if metrics_data is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics_data, indent=2) + "\n")
            manifest["files"]["metrics.json"] = file_sha256(tmp / "metrics.json")
        (tmp / EXPORT_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(manifest, cfg, metrics_data, Path(out).name))
    return manifest


def verify_export(folder: str | Path, manifest: dict) -> None:
    """Every file the export lists is there with its sha256 (a truncated or edited copy is refused)."""
    folder = Path(folder)
    for rel, digest in manifest["files"].items():
        path = folder / rel
        if not path.is_file() or file_sha256(path) != digest:
            raise ConfigError(f"{path} is missing or differs from the sha256 in {folder / EXPORT_FILE}: the export "
                              "is incomplete or was changed; copy it again")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def model_card(manifest: dict, cfg: dict, metrics: dict | None, name: str) -> str:
    """The README.md of an export: what it is, what it scored, how it was made and how to use it."""
    base = manifest["base"]
    params = manifest.get("params") or {}
    lines = [
        f"# {name}: {manifest['method']} on {manifest['lm']}", "",
        f"A vladapter run ({manifest['method']}) trained on {', '.join(manifest['tasks'])}: only the trained "
        "tensors (safetensors), to be loaded onto the base below.", "",
        "| | |", "|---|---|",
        f"| method | `{manifest['method']}` |",
        f"| language model | `{manifest['lm']}` |",
        f"| base weights | `{base['init'] or manifest['lm']}` (frozen weights' sha256 `{base['sha256']}`) |",
        f"| trained parameters | {params.get('trainable', '-'):,} of {params.get('total', '-'):,} "
        f"({_fmt(params.get('percent'))} %) |" if params else "| trained parameters | - |",
        f"| seeds | {', '.join(map(str, manifest['seeds'])) if manifest['seeds'] else cfg.get('seed', 0)} |",
        "",
    ]
    if metrics:
        tasks = list(metrics.get("scores", {}))
        lines += [f"## Scores ({metrics.get('split', 'test')} split; %, CIDEr x 100)", "",
                  "| seed | " + " | ".join(tasks) + " | average |", "|---|" + "---:|" * (len(tasks) + 1)]
        per_seed = metrics.get("seeds") or {str(cfg.get("seed", 0)): metrics}
        for seed, m in per_seed.items():
            lines.append(f"| {seed} | " + " | ".join(_fmt(m["scores"].get(t)) for t in tasks)
                         + f" | {_fmt(m.get('average'))} |")
        if metrics.get("seeds"):
            lines.append("| mean | " + " | ".join(_fmt(metrics["scores"].get(t)) for t in tasks)
                         + f" | {_fmt(metrics.get('average'))} |")
        lines.append("")
    settings = json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True)
    seeds = f" --seeds {' '.join(map(str, manifest['seeds']))}" if manifest["seeds"] else ""
    lines += [
        "## How it was made", "",
        "```bash", f"vladapter train --settings '{settings}'{seeds} --out models/{manifest['lm']}/{manifest['run']}",
        "```", "",
        "## Use it", "",
        "```bash",
        f"vladapter evaluate --model {name}" + (f" --base {base['init']}" if base["init"] else ""),
        "```",
        "evaluates every seed it holds on the prepared data and features of the config; `--base` names the "
        "folder of the base weights on your machine (a base with other frozen weights is refused).", "",
        "## Configuration", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", "",
    ]
    return "\n".join(lines)


# --- CLI ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="finished run folder (models/<lm>/<run>)")
    parser.add_argument("--metrics", help="its metrics JSON (default: metrics/<lm>/<run>.json when it exists)")
    parser.add_argument("--out", required=True, help="export folder to write")


def run(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    metrics = args.metrics
    if metrics is None:
        default = Path("metrics") / model_dir.parent.name / f"{model_dir.name}.json"
        metrics = default if default.is_file() else None
    manifest = export_run(model_dir, args.out, metrics)
    print(f"wrote {args.out}: {manifest['method']} on {manifest['lm']}, {len(manifest['files'])} files "
          f"(base sha256 {manifest['base']['sha256'][:12]}...)")
    return 0
