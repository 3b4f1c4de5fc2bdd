"""Errors that reach the user. Each says what went wrong, where, and how to fix it."""

from __future__ import annotations


class VladapterError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 2."""


class ConfigError(VladapterError):
    """A configuration key or value is wrong."""


class DataError(VladapterError):
    """A data file or record is missing or malformed.

    ``path`` names the file, ``record`` the record inside it (id or line number), ``fix``
    tells the user what to do.
    """

    def __init__(self, message: str, path=None, record=None, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.record = record
        self.fix = fix
        parts = [message]
        if self.path is not None:
            parts.append(f"file: {self.path}")
        if record is not None:
            parts.append(f"record: {record}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("\n  ".join(parts))


class ChecksumError(DataError):
    """A downloaded file does not match its registered checksum."""


class TrainingError(VladapterError):
    """Training cannot go on (e.g. a NaN/inf loss); the last good checkpoint is kept."""
