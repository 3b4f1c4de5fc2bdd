"""Share a workflow run through a DVC remote (docs/workflow.md, "Sharing through a remote").

    python workflow/scripts/dvc_share.py publish     # after `make run`: record it, stage it in git
    python workflow/scripts/dvc_share.py pull [-r R] # in a clone: fetch it, mark it up to date

publish: the run must be complete (`snakemake -n` has nothing to do). `dvc commit` records
what Snakemake built in dvc.lock without running anything (the cache copies the files and
leaves them, their times included, as they are), then dvc.lock and the outputs DVC leaves to git
(metrics/, results/: every uncached out of dvc.yaml) are staged. Then commit them and
`dvc push` the cache.

pull: `dvc pull` restores the cached outputs of dvc.lock, with the times of the download,
in no particular order. Once `dvc status` says the workspace is what dvc.lock records (the
config included), `snakemake --touch --forceall` marks every job's outputs up to date in
the DAG's order and records its provenance, so Snakemake has nothing to redo either.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--profile", "profiles/default"]
DVC = [sys.executable, "-m", "dvc"]
NOTHING_TO_DO = "Nothing to be done"


class ShareError(Exception):
    """A state in which publishing or pulling would record something false; says the fix."""


def _run(cmd: list[str], capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=capture, text=True)
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-3000:] if capture else ""
        raise ShareError(f"`{' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)}` failed "
                         f"(exit {proc.returncode})\n{tail}".rstrip())
    return proc


def dvc_changes() -> dict:
    """`dvc status` as JSON: stage -> what differs from dvc.lock ({} when nothing does)."""
    return json.loads(_run([*DVC, "status", "--json"]).stdout or "{}")


def git_outs(dvc_yaml: Path = Path("dvc.yaml")) -> list[str]:
    """The outputs dvc.yaml leaves to git (cache: false): metrics, tables, figures."""
    paths = []
    for stage in yaml.safe_load(dvc_yaml.read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
                if opts and opts.get("cache") is False:
                    paths.append(path)
    return paths


def publish() -> str:
    dry = _run([*SNAKEMAKE, "--dry-run"])
    if NOTHING_TO_DO not in dry.stdout + dry.stderr:
        raise ShareError("the workflow has jobs left to run (`snakemake -n` plans some): run it to the end "
                         "(make run), then publish")
    _run([*DVC, "commit", "--force"])
    if changes := dvc_changes():
        raise ShareError(f"after `dvc commit`, dvc status still lists {', '.join(changes)}: {json.dumps(changes)}")
    paths = [p for p in git_outs() if Path(p).exists()]
    _run(["git", "add", "dvc.lock", *paths])
    return (f"recorded the run in dvc.lock and staged it with {len(paths)} files DVC leaves to git "
            f"(metrics, tables, figures). Next:\n"
            f"  git commit -m 'Results of the workflow run' && dvc push   # to the default remote")


def pull(dvc_args: list[str]) -> str:
    if not Path("dvc.lock").exists():
        raise ShareError("no dvc.lock in this folder: nothing has been published to pull (the publisher runs "
                         "`make publish` after `make run` and commits dvc.lock)")
    _run([*DVC, "pull", *dvc_args], capture=False)
    if changes := dvc_changes():
        raise ShareError(f"the workspace differs from dvc.lock ({', '.join(changes)}: {json.dumps(changes)}); "
                         "outputs were not marked up to date. Run `dvc repro` (or `make run`) to rebuild what changed")
    _run([*SNAKEMAKE, "--touch", "--forceall"])
    return "pulled every output of dvc.lock and marked it up to date: `snakemake -n` and `dvc status` have nothing to do"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("publish", help="record a finished run in dvc.lock and stage it in git")
    sub.add_parser("pull", help="dvc pull, then mark the pulled outputs up to date for Snakemake; "
                                "other arguments go to `dvc pull` (e.g. -r myremote)")
    args, dvc_args = parser.parse_known_args(argv)
    if dvc_args and args.command != "pull":
        parser.error(f"unrecognized arguments: {' '.join(dvc_args)}")
    try:
        print(publish() if args.command == "publish" else pull(dvc_args))
    except ShareError as e:
        print(f"dvc_share {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
