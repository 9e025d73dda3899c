"""Atomic file writes: a temporary file in the same folder, fsync, then rename over the target.

A crash, a kill or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True):
    """Open a temporary file beside `path`; on clean exit fsync and rename it to `path`.

    mode      : "wb" or "w" (text, UTF-8)
    overwrite : if False and `path` exists when the write completes, raise FileExistsError and
                keep the existing file (used for recordings, which are never overwritten).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError if path appeared meanwhile
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> None:
    with atomic_open(path, "wb", overwrite=overwrite) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> None:
    with atomic_open(path, "w", overwrite=overwrite) as f:
        f.write(text)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
