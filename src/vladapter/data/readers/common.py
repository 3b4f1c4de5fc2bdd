"""What every reader shares: the error policy, JSON loading, split names, subtitles."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vladapter.errors import ConfigError, DataError
from vladapter.utils.io import NOT_UTF8_FIX, read_utf8, utf8_lines

ON_ERROR = ("raise", "skip")


@dataclass
class Problems:
    """The error policy of one read: ``raise`` (default) turns the first bad record into a
    DataError naming file, record and fix; ``skip`` counts it and goes on.

    ``skipped`` counts skips per reason; ``examples`` keeps the first few messages so the
    summary can show what was wrong.
    """

    on_error: str = "raise"
    skipped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def __post_init__(self) -> None:
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {ON_ERROR}, not {self.on_error!r}")

    def bad(self, reason: str, path, record, fix: str) -> None:
        """Report a bad record: raises DataError, or (skip) counts it; the caller then skips it."""
        error = DataError(reason, path=path, record=record, fix=fix)
        if self.on_error == "raise":
            raise error
        self.skipped[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.skipped.values())


def require(path: Path, what: str, fix: str) -> Path:
    """``path`` if it exists, else a DataError saying which file of which dataset is missing.

    ``fix`` is for a folder that `vladapter download` makes; in the user's own folder (which
    download never writes into) the fix says where the published file comes from instead."""
    if not path.exists():
        from vladapter.data.download import made_here, origin_of

        origin = origin_of(path.name)
        if origin is not None and path.parent.is_dir() and not made_here(path.parent):
            fix = (f"{path.name} comes from {origin[1]}: put it into {path.parent} (a folder of yours, which "
                   f"vladapter reads and never writes), or point the dataset's folder (data.paths.{origin[0]}, "
                   f"prepare --path {origin[0]}=FOLDER) at one that has it")
        raise DataError(f"missing {what}", path=path, fix=fix)
    return path


def load_json(path: Path) -> Any:
    """The parsed JSON file; a missing, non-UTF-8 or unparsable file raises DataError naming it
    (whatever the error policy: a file that cannot be parsed has no records to skip)."""
    path = Path(path)
    require(path, "file", "check the path, or run `vladapter download` / `vladapter toyworld`")
    text = read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg} at line {e.lineno} column {e.colno})", path=path,
                        fix="the file is truncated or corrupt: download it again") from None


def json_lines(path: Path, problems: Problems) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-empty line; bad lines go to ``problems``."""
    path = Path(path)
    for lineno, line in text_lines(path, problems):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.bad(f"invalid JSON ({e.msg})", path, f"line {lineno}", "repair or remove the line")
            continue
        if not isinstance(obj, dict):
            problems.bad("a line is not a JSON object", path, f"line {lineno}", "repair or remove the line")
            continue
        yield lineno, obj


def text_lines(path: Path, problems: Problems) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a UTF-8 text file; a line that is not UTF-8 goes
    to ``problems`` and reads as an empty line (so later line numbers stay right)."""
    require(path, "file", "check the path, or run `vladapter download` / `vladapter toyworld`")
    for lineno, line, problem in utf8_lines(path):
        if problem is not None:
            problems.bad(problem, path, f"line {lineno}", NOT_UTF8_FIX)
            line = "\n"
        yield lineno, line


def field_of(obj: dict, key: str, path: Path, record, problems: Problems, kind=None):
    """``obj[key]`` (optionally checked to be ``kind``), or None after reporting it missing/bad."""
    if key not in obj or obj[key] is None:
        problems.bad(f"missing field {key!r}", path, record, "fix or remove the record")
        return None
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        problems.bad(f"field {key!r} is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}",
                     path, record, "fix or remove the record")
        return None
    return value


# -------------------------------------------------------------------------------- subtitles

@dataclass(frozen=True)
class Subtitle:
    start: float
    end: float
    text: str


SUBTITLES_FIX = ("subtitles are not downloadable by URL: convert the VALUE release's subtitles to JSON lines "
                 '{"vid_name", "sub": [{"start", "end", "text"}]} there (docs/data.md), or run `vladapter toyworld`')


def read_subtitles(path: Path, problems: Problems) -> dict[str, list[Subtitle]]:
    """JSON lines ``{"vid_name", "sub": [{"start", "end", "text"}]}`` -> vid_name -> lines."""
    require(path, "subtitles file", SUBTITLES_FIX)
    out: dict[str, list[Subtitle]] = {}
    for lineno, obj in json_lines(path, problems):
        name = field_of(obj, "vid_name", path, f"line {lineno}", problems, str)
        subs = field_of(obj, "sub", path, f"line {lineno}", problems, list) if name is not None else None
        if subs is None:
            continue
        try:
            out[name] = [Subtitle(float(s["start"]), float(s["end"]), str(s["text"])) for s in subs]
        except (KeyError, TypeError, ValueError):
            problems.bad("subtitle lines need start, end (seconds) and text", path, f"line {lineno} ({name})",
                         "fix the subtitle entries")
    return out


def subtitles_path(folder: Path, name: str, value_name: str) -> Path:
    """A video dataset's subtitles: ``<folder>/<name>`` (this project's raw layout), else VALUE's
    shared file ``<folder>/../<value_name>`` (DataRelease writes ``ann/<dataset>/`` beside
    ``ann/{tv,how2,yc2}_subtitles.jsonl``); a DataError naming both when neither exists."""
    own, value = Path(folder) / name, Path(folder).parent / value_name
    if own.exists() or not value.exists():
        return require(own, f"subtitles file (or VALUE's {value})", SUBTITLES_FIX)
    return value


def first_existing(folder: Path, names: list[str], what: str, fix: str) -> list[Path]:
    """The files of ``names`` that exist in ``folder``, in that order (a split released under
    several names: VALUE's merged test file beside the original public one); a DataError
    naming them when none does."""
    found = [Path(folder) / n for n in names if (Path(folder) / n).exists()]
    if not found:
        raise DataError(f"missing {what} (any of {', '.join(names)})", path=Path(folder) / names[0], fix=fix)
    return found


def subtitle_context(subs: list[Subtitle], span: list[float] | None) -> str:
    """The subtitle lines overlapping ``span`` (all lines when span is None), in order."""
    if span is None:
        return " ".join(s.text for s in subs)
    start, end = span
    return " ".join(s.text for s in subs if s.end > start and s.start < end)
