"""The config schema's sections and enums generated from the code that declares them.

``workflow/schemas/config.schema.yaml`` is checked in (Snakemake validates every config
against it before any job); its ``train``, ``pretrain`` and ``evaluate`` sections and the
preset enum are generated here from the config dataclasses (``vladapter.core.config``: each
key's type from its annotation, its range, choices and description from its ``key(...)``
declaration), the preset registry (``vladapter.petl.PRESETS``) and the dataset specs
(``vladapter.data.datasets``: the dataset enums), between marker lines.
``python workflow/scripts/config_schema.py`` rewrites them; ``--check`` (and the test suite)
fails when the file and the code differ.

Defaults are written into the descriptions, not as JSON-schema ``default``: Snakemake's
validate fills ``default`` values into the config, which would make every sub-section
(``train.video``) carry every default and override the section's own values.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from vladapter.core.config import (OVERRIDES, EvaluateConfig, PretrainConfig, TrainConfig, item_type,
                                   key_info, key_types)
from vladapter.errors import ConfigError

SECTIONS = {"train": TrainConfig, "pretrain": PretrainConfig, "evaluate": EvaluateConfig}
DESCRIPTIONS = {"train": "keys of vladapter.core.config.TrainConfig (see docs/training.md)",
                "pretrain": "keys of vladapter.core.config.PretrainConfig: the train keys, plus the "
                            "objectives and what the workflow reads (enabled, compare, matching, video)",
                "evaluate": "keys of vladapter.core.config.EvaluateConfig"}
BLOCKS = ("defs", "sections")
GENERATOR = "workflow/scripts/config_schema.py"


def _begin(block: str) -> str:
    return f"# >>> generated ({block}) by {GENERATOR} from the code (vladapter.core.schema): do not edit"


def _end(block: str) -> str:
    return f"# <<< generated ({block})"


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def key_schema(cls: type, name: str, describe: bool = True) -> dict[str, Any]:
    """The JSON schema of one config key, from its annotation and declaration."""
    info, types = key_info(cls, name), key_types(cls, name)
    out: dict[str, Any] = {}
    nullable = "null" in types
    if info.get("ref"):
        ref = {"$ref": f"#/$defs/{info['ref']}"}
        out = {"anyOf": [ref, {"type": "null"}]} if nullable else ref
    elif info.get("choices") is not None:
        out["enum"] = [*info["choices"], *([None] if nullable else [])]
    elif types:
        out["type"] = types[0] if len(types) == 1 else list(types)
    for src, dst in (("minimum", "minimum"), ("maximum", "maximum"), ("exclusive_minimum", "exclusiveMinimum"),
                     ("exclusive_maximum", "exclusiveMaximum")):
        if info.get(src) is not None:
            out[dst] = info[src]
    if "array" in types and not info.get("ref"):
        items = dict(info.get("items") or {})
        if item_type(cls, name) and "enum" not in items:
            items = {"type": item_type(cls, name), **items}
        if items:
            out["items"] = items
        if info.get("min_items"):
            out["minItems"] = info["min_items"]
        if info.get("unique"):
            out["uniqueItems"] = True
    if describe and info.get("doc"):
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        default = _default(field)
        shown = "" if default in ({}, None) and info.get("workflow") else f" (default: {json.dumps(default)})"
        out["description"] = info["doc"] + shown
    return out


def _subsection(cls: type, where: str, doc: str) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls) if where in key_info(cls, f.name).get("also_in", ())]
    out: dict[str, Any] = {"description": doc, "type": "object", "additionalProperties": False}
    required = [n for n in names if where in key_info(cls, n).get("required", ())]
    if required:
        out["required"] = required
    out["properties"] = {n: key_schema(cls, n, describe=False) for n in names}
    return out


def section_schema(section: str, cls: type | None = None) -> dict[str, Any]:
    """The schema of config section ``section`` (``train``, ``pretrain``, ``evaluate``)."""
    cls = cls or SECTIONS[section]
    out: dict[str, Any] = {"description": DESCRIPTIONS.get(section, section), "type": "object",
                           "additionalProperties": False}
    names = [f.name for f in dataclasses.fields(cls)]
    required = [n for n in names if section in key_info(cls, n).get("required", ())]
    if required:
        out["required"] = required
    props = {}
    for name in names:
        where = f"{section}.{name}"
        props[name] = (_subsection(cls, where, key_info(cls, name)["doc"]) if where in OVERRIDES
                       else key_schema(cls, name))
    out["properties"] = props
    return out


def generated(presets: list[str] | None = None, sections: dict[str, type] | None = None) -> dict[str, dict]:
    """What the generator writes: {"defs": {...$defs entries}, "sections": {...properties}}."""
    if presets is None:
        from vladapter.petl.registry import PRESETS

        presets = list(PRESETS)
    from vladapter.data.datasets import datasets_of

    sections = sections or SECTIONS
    image, video = list(datasets_of("image")), list(datasets_of("video"))
    return {"defs": {"preset": {"enum": list(presets)}, "image_dataset": {"enum": image},
                     "video_dataset": {"enum": video}, "dataset": {"enum": image + video}},
            "sections": {name: section_schema(name, cls) for name, cls in sections.items()}}


# --- the YAML text: one line per key, sub-sections as blocks ---------------------------------

def _flow(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _render(mapping: dict[str, Any], indent: int) -> list[str]:
    pad, lines = " " * indent, []
    for name, value in mapping.items():
        if isinstance(value, dict) and ("properties" in value or name == "properties"):
            lines.append(f"{pad}{name}:")
            lines += _render(value, indent + 2)
        else:
            lines.append(f"{pad}{name}: {_flow(value)}")
    return lines


def render(block: dict[str, Any], indent: int) -> str:
    """``block`` as YAML lines at ``indent``, each section separated by a blank line."""
    out = ""
    for name, value in block.items():
        part = "\n".join(_render({name: value}, indent))
        out += ("" if not out else "\n\n" if "\n" in part else "\n") + part
    return out


def _block_span(text: str, block: str, path: Path) -> tuple[int, int, int]:
    begin, end = _begin(block), _end(block)
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ConfigError(f"{path}: the marker lines of the generated block {block!r} are missing or repeated; "
                          f"restore them:\n  {begin}\n  {end}")
    start = text.index(begin)
    line_start = text.rindex("\n", 0, start) + 1
    indent = start - line_start
    return start + len(begin) + 1, text.index(end) - indent, indent


def write(path: str | Path, content: dict[str, dict] | None = None) -> bool:
    """Rewrite the generated blocks of the schema at ``path``; True if it changed."""
    from vladapter.utils.io import write_text

    path = Path(path)
    text = old = path.read_text(encoding="utf-8")
    content = content or generated()
    for block in BLOCKS:
        start, stop, indent = _block_span(text, block, path)
        text = text[:start] + render(content[block], indent) + "\n" + text[stop:]
    if text != old:
        write_text(path, text)
    return text != old


def drift(schema: dict[str, Any], content: dict[str, dict] | None = None) -> list[str]:
    """Where the parsed schema differs from what the code declares: one line per key
    (its path, the schema's and the code's declaration); [] when in sync."""
    content = content or generated()
    found: list[str] = []
    pairs = [(f"$defs.{k}", schema.get("$defs", {}).get(k), v) for k, v in content["defs"].items()]
    pairs += [(k, schema.get("properties", {}).get(k), v) for k, v in content["sections"].items()]
    for where, have, want in pairs:
        _compare(where, have, want, found)
    return found


def _compare(where: str, have: Any, want: Any, found: list[str]) -> None:
    if isinstance(want, dict) and "properties" in want and isinstance(have, dict):
        for k in [*want, *(k for k in have if k not in want)]:  # an object: its keywords, then key by key
            if k == "properties":
                theirs, ours = have.get(k) or {}, want[k]
                for name in [*ours, *(n for n in theirs if n not in ours)]:
                    _compare(f"{where}.{name}", theirs.get(name), ours.get(name), found)
            elif have.get(k) != want.get(k):
                found.append(f"{where} ({k}): the schema has {_flow(have.get(k))}, "
                             f"the code declares {_flow(want.get(k))}")
        return
    if have != want:
        found.append(f"{where}: the schema has {_flow(have)}, the code declares {_flow(want)}")
