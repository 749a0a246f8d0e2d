"""The one error type for bad input.

Every reader raises :class:`InputError` for anything wrong with a file a user brought (predictions,
checkpoints, dataset files). The CLI catches it and prints one line naming the file, the record and the
field, then exits with code 2 and writes nothing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

EXIT_INPUT_ERROR = 2


class InputError(Exception):
    """A user-supplied file or option is wrong.

    ``file``: the path; ``record``: where in it (``"line 12"``, ``"index 3"``, ``"key S9/Walking/0"``);
    ``field``: which field; ``problem``: what was expected and what was found.
    """

    def __init__(self, file: str | Path | None, record: str | None, field: str | None, problem: str):
        self.file = None if file is None else str(file)
        self.record = record
        self.field = field
        self.problem = problem
        super().__init__(self.line())

    def line(self) -> str:
        """One line, whatever the problem text holds (library messages can span lines and carry colour codes)."""
        where = [p for p in (self.file, self.record, f"field '{self.field}'" if self.field else None) if p]
        problem = " ".join(_ANSI.sub("", self.problem).split())
        return (": ".join([", ".join(where), problem])) if where else problem


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def load_json(path: Path, missing: str = "file not found") -> Any:
    """A JSON file, every way it can fail turned into one :class:`InputError` line (``missing``: what a user
    should hear when the file is not there)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, None, None, missing) from None
    except json.JSONDecodeError as e:
        raise InputError(path, f"line {e.lineno}", None, f"not valid JSON ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, None, None, f"cannot read ({e.__class__.__name__})") from None
