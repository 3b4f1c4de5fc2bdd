"""`vladapter <command>`: one entry point, one subcommand per pipeline stage.

Each command lives in the module that implements it, which exposes

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int | None

Modules are imported only when their command runs (or its --help is asked for), and they
import torch, transformers and h5py inside their functions, not at the top: arguments are
parsed (and --help answered) before any heavy import, so `vladapter <command> --help`
answers in well under 2 s and a stage never pays for another stage's imports.
The Snakemake rules, the tests and users all call these same commands.

Every command computes with the CPU arithmetic of vladapter.utils.arithmetic (one
instruction-set level and thread count on every x86-64 host), set here before torch loads.

Exit status: 0 done, 2 a usage error or a bad input (a one-paragraph message naming the
file, record or key and the fix, never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Order = the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "toyworld": ("vladapter.data.toyworld", "generate the toy world in the published dataset formats"),
    "download": ("vladapter.data.download", "download a real dataset's files (resumable, checksum-verified)"),
    "prepare": ("vladapter.data.prepare", "read a dataset's published files into prepared JSON-lines records"),
    "build-tokenizer": ("vladapter.models.tokenizer", "build the word-level tokenizer of the toy models"),
    "sample-frames": ("vladapter.features.frames", "sample video frames with decord into one HDF5 per dataset"),
    "train-toy-clip": ("vladapter.features.toy_clip", "train the tiny CLIP on toy image-caption pairs"),
    "extract-features": ("vladapter.features.extract", "extract frozen CLIP features into HDF5"),
    "import-features": ("vladapter.features.released", "released features into HDF5: VALUE's video .npz, the reference's image .h5 folders"),
    "probe": ("vladapter.features.probe", "linear-probe features on toy attributes (scikit-learn)"),
    "params": ("vladapter.petl.accounting", "trainable/total parameters of every PETL preset"),
    "import-checkpoint": ("vladapter.models.released",
                          "VL-T5/VL-BART's released pre-trained checkpoint as a backbone (every tensor mapped)"),
    "pretrain": ("vladapter.train.pretrain", "VL pre-training of the backbone (span MLM, matching, QA)"),
    "train": ("vladapter.train.run", "multi-task training with a PETL method"),
    "evaluate": ("vladapter.evaluate.run", "generate and score with the official metrics"),
    "export": ("vladapter.evaluate.export", "a trained run as a shareable folder: tensors, model card, base sha256"),
    "report": ("vladapter.report.run", "results table, scores CSV, params-vs-score plot"),
    "value-submission": ("vladapter.tasks.value", "lay a video run's predictions out for VALUE's leaderboard, checked"),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    lines = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return argparse.ArgumentParser(
        prog="vladapter",
        description="Parameter-efficient transfer learning for vision-and-language models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"commands:\n{lines}\n\nRun `vladapter <command> --help` for a command's options.",
        usage="vladapter [-h] [--version] <command> [options]",
    )


def build_parser(command: str) -> argparse.ArgumentParser:
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"vladapter {command}",
        description=(module.__doc__ or help_).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vladapter import __version__
    from vladapter.errors import VladapterError
    from vladapter.utils import arithmetic

    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # before any command module loads torch or numpy: they read it when they load
        arithmetic.pin()
    except VladapterError as e:
        print(f"vladapter: error: {e}", file=sys.stderr)
        return 2
    top = _top_parser()
    if not argv:  # a usage error, as for any command line that names no command
        top.print_help(sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] == "--version":
        print(f"vladapter {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        top.error(f"unknown command {command!r} (choose from: {', '.join(COMMANDS)})")
    args = build_parser(command).parse_args(rest)
    code = _run(command, args, VladapterError)
    if code:
        from vladapter.train.launch import report_exit

        report_exit(code)  # under vladapter's torchrun: the code it exits with (75: rerun to resume)
    return code


def _run(command: str, args: argparse.Namespace, VladapterError: type) -> int:
    try:
        return int(args._run(args) or 0)
    except VladapterError as e:
        print(f"vladapter {command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 2)  # 2: bad input; an error type may say otherwise
    except OSError as e:
        # a folder that cannot be written or a full disk is the user's to fix, not a bug
        from vladapter.utils.io import storage_error

        error = storage_error(e)
        if error is None:
            raise
        print(f"vladapter {command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vladapter {command}: interrupted; completed work is kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
