"""The one error type for bad input: it always names the file, the line and the field."""
from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad input data. ``str()`` reads ``"<path>:<line>: field '<field>': <message>"``."""

    def __init__(self, path: str | PathLike | None, line: int | None, field: str | None, message: str):
        self.path = str(path) if path is not None else "<input>"
        self.line = line
        self.field = field
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")
