"""Safe file writes: an output path that would lose a file is refused; a write is a temp file in the same
folder, fsync, then a rename over the target."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bnext.errors import UserError


def check_output_path(output: str | Path, *inputs: str | Path) -> Path:
    """``output`` as a Path, or a UserError when writing it would lose something: it is an existing
    directory, its folder is a file, or it is the same file as one of ``inputs`` (the files the writer reads).
    """
    output = Path(output)
    if output.is_dir():
        raise UserError(f"output {output} is a directory, not a file: give a file path such as {output / 'NAME'}")
    if output.parent.exists() and not output.parent.is_dir():
        raise UserError(f"output {output} lies inside {output.parent}, which is a file: choose a path in a folder")
    for source in map(Path, inputs):
        if output.exists() and source.exists() and output.samefile(source):
            raise UserError(
                f"output {output} is the input {source}: writing it would destroy the input; choose another output path"
            )
    return output


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(handle)`` on a temp file next to ``path`` and rename it over ``path``.

    A crash or Ctrl-C at any point leaves either the old file or the new one, never half of one;
    a ``path`` that is a directory is refused before anything is written.
    """
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
