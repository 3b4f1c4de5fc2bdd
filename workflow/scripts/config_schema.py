"""Regenerate the generated blocks of workflow/schemas/config.schema.yaml from the code.

The ``train``, ``pretrain`` and ``evaluate`` sections and the preset enum are written from
the config dataclasses (vladapter.core.config: each key's annotation and ``key(...)``
declaration) and the preset registry (vladapter.petl.PRESETS): vladapter.core.schema.

    python workflow/scripts/config_schema.py           # rewrite the blocks
    python workflow/scripts/config_schema.py --check   # exit 1 and list the keys that differ
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


def main(argv: list[str] | None = None) -> int:
    from vladapter.core import schema

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is out of date")
    parser.add_argument("--schema", default=str(SCHEMA), help="the schema file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        found = schema.drift(yaml.safe_load(Path(args.schema).read_text(encoding="utf-8")))
        if found:
            print(f"{args.schema} differs from the code's declarations:", *found[:20], sep="\n  ", file=sys.stderr)
            print(f"  fix: python {schema.GENERATOR}", file=sys.stderr)
            return 1
        return 0
    changed = schema.write(args.schema)
    print(f"{args.schema}: {'rewritten' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
