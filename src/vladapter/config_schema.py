"""The workflow's config checked against workflow/schemas/config.schema.yaml, with messages
a user can act on: the config file(s), the key's dotted path, what is wrong, and the keys
allowed there; never the schema itself.

Values given as ``--config 'world={kind: toy, seed: 1}'`` reach the workflow as strings
(Snakemake parses nested --config values without types); where the schema wants a number
or a boolean and the string is one in YAML, it is converted first, so the documented
nested form works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from vladapter.errors import ConfigError

YAML_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def yaml_problem(path: str | Path) -> str | None:
    """What makes ``path`` unreadable as YAML (file, line, column, the fix), or None."""
    try:
        load_yaml(path)
    except ConfigError as e:
        return str(e)
    return None


def load_yaml(path: str | Path) -> Any:
    """The parsed YAML file; a syntax error is a ConfigError naming the file, line and column."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {e.problem or e.context}\n"
                          "  fix: correct the YAML there (indentation, a missing ':' or closing bracket)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML ({e})\n  fix: save it as UTF-8 YAML") from None


def config_problems(config: dict, schema_path: str | Path, config_files: Iterable[str | Path] = (),
                    overrides: Mapping | None = None) -> str | None:
    """What is wrong with ``config`` by the schema, as a message naming where each wrong
    value comes from (the config file(s), or ``--config`` for the keys in ``overrides``,
    Snakemake's --config values), each wrong key and the fix; None when it is valid. (The
    workflow raises it as a WorkflowError, which Snakemake prints without a traceback.)

    Strings given where the schema wants a number or boolean (nested ``--config`` values)
    are converted in place first. Defaults are not filled in (``snakemake.utils.validate``
    does that after this check).
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import relevance

    schema = load_yaml(schema_path)
    validator = Draft202012Validator(schema)
    for _ in range(10):  # each pass may uncover errors inside values it converted
        if not any([_coerce(config, e) for e in _leaves(validator.iter_errors(config))]):
            break
    errors = list(validator.iter_errors(config))
    if not errors:
        return None
    shown = _unique(sorted(_leaves(errors), key=relevance, reverse=True))[:5]
    given = [_given_with_config(overrides or {}, e) for e in shown]
    files = ", ".join(map(str, config_files)) or "the config"
    sources = ([files] if not all(given) else []) + (["--config"] if any(given) else [])
    lines = [f"invalid config ({', '.join(sources)}):"]
    for found, by_flag in zip(shown, given):
        lines.append(f"  {_describe(found)}" + (" (given with --config)" if by_flag else ""))
    where = " or ".join((["the config file"] if not all(given) else []) + (["--config"] if any(given) else []))
    lines.append(f"  fix: correct these keys in {where} (workflow/schemas/config.schema.yaml lists every key)")
    return "\n".join(lines)


def _given_with_config(overrides: dict, error) -> bool:
    """Whether the value ``error`` is about was given with --config (Snakemake merges those
    values into the config files' key by key: a key whose value is not a table replaces it)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":  # the unknown key, inside the table the error is about
        path.append(sorted(set(error.instance) - set(error.schema.get("properties", {})))[0])
    elif "propertyNames" in error.relative_schema_path:
        path.append(error.instance)
    node = overrides
    for key in path:
        if not isinstance(node, Mapping):
            return True  # a value given with --config holds this key
        if key not in node:
            return False
        node = node[key]
    return True


def _leaves(errors) -> list:
    """The errors to report: for a failed oneOf/anyOf, the alternatives' own errors (the one
    that went deepest is the one the user meant), not "is not valid under any schema"."""
    out = []
    for error in errors:
        # alternatives whose type did not even match are not what the user meant
        meant = [e for e in error.context
                 if not (e.validator == "type" and list(e.absolute_path) == list(error.absolute_path))]
        if meant and "propertyNames" not in error.relative_schema_path:  # (_describe lists a key's alternatives)
            deepest = max(len(e.absolute_path) for e in meant)
            out.extend(_leaves([e for e in meant if len(e.absolute_path) == deepest]))
            continue
        out.append(error)
    return out


def _unique(errors: list) -> list:
    seen, out = set(), []
    for error in errors:
        key = (tuple(error.absolute_path), error.message)
        if key not in seen:
            seen.add(key)
            out.append(error)
    return out


def _coerce(config: dict, error) -> bool:
    """Convert the string at ``error``'s path in place when the schema wants a scalar type it
    spells in YAML (a nested --config value); True if something changed."""
    if error.validator in ("anyOf", "oneOf") and isinstance(error.instance, str):  # a number or a table
        return any(_coerce(config, e) for e in error.context if e.validator == "type")
    if error.validator != "type" or not isinstance(error.instance, str) or not error.absolute_path:
        return False
    wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    try:
        value = yaml.safe_load(error.instance)
    except yaml.YAMLError:
        return False
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string; Python does not
        try:
            value = float(value)
        except ValueError:
            return False
    if not any(t in YAML_TYPES and isinstance(value, YAML_TYPES[t]) and not (t != "boolean" and isinstance(value, bool))
               for t in wanted):
        return False
    *parents, last = error.absolute_path
    target = config
    for key in parents:
        target = target[key]
    target[last] = value
    return True


def _dotted(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error) -> str:
    """One line: the key, what is wrong with it (and what is allowed there)."""
    key = _dotted(error.absolute_path)
    if "propertyNames" in error.relative_schema_path:  # a key of a table (lr: {preset: value})
        allowed = [c.validator_value for c in error.context if c.validator == "const"]
        allowed += [v for c in error.context if c.validator == "enum" for v in c.validator_value]
        return f"{key}: unknown key {error.instance!r} (allowed: {', '.join(map(str, allowed))})"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))
        allowed = f" (known: {', '.join(known)})" if known else ""
        if error.schema.get("patternProperties"):
            allowed = f" (allowed: {', '.join(known + list(error.schema['patternProperties']))})"
        return f"{key}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}{allowed}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not one of {', '.join(map(repr, error.validator_value))}"
    return f"{key}: {error.message}"
