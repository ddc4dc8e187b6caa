"""Files that a reader (or a resumed run) sees whole or not at all."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(path: Path, write: Callable[[IO[Any]], object], binary: bool = False) -> None:
    """
    Write ``path`` through ``write(file)`` into a temporary file beside it, flushed to disk, then renamed over it:
    a process killed at any moment leaves the old file or the whole new one, never a part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if binary else "w"
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as file:
        try:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            file.close()
            os.unlink(file.name)
            raise
        temporary = Path(file.name)
    os.replace(temporary, path)


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """:func:`write_atomically` of ``data``."""
    write_atomically(path, lambda file: file.write(data), binary=True)
