"""Atomic file writes: a temporary file in the same folder, fsync, then rename over the target.

A crash, a kill or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from edgekws.errors import EdgekwsError


class OutputError(EdgekwsError, OSError):
    """A file or folder that cannot be written (read-only place, a file where a folder must be, ...).

    Also an OSError, so callers that treat a failed write as a soft failure (the feature cache) still can.
    """


def make_dir(path: str | os.PathLike) -> Path:
    """mkdir -p `path`, or raise OutputError naming it and the reason."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create this folder ({_reason(exc)})") from None
    return path


def check_outside(out: str | os.PathLike, data: str | os.PathLike, what: str = "DATA", option: str = "--out") -> None:
    """Refuse an output folder that is the input folder `data` or lies inside it: a bundle written
    into a dataset would be read back as one more word folder."""
    out_r, data_r = Path(out).resolve(), Path(data).resolve()
    if out_r == data_r or data_r in out_r.parents:
        raise OutputError(f"{option} {out}: is inside the input folder {what} {data}; choose a folder outside it")


def check_output_file(path: str | os.PathLike, option: str, inputs=()) -> None:
    """Refuse, before any work is done, an output file `path` (given as `option`) that is a folder,
    a WAV file (recordings are never overwritten), one of the input files, or inside an input folder.
    `inputs`: (path, name) pairs, e.g. ((data, "DATA"),)."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"{option} {path}: is a folder; give a file name")
    if problem := cannot_make_folder(out.parent):   # found now, not after the work
        raise OutputError(f"{option} {path}: cannot be written ({problem})")
    out_r = out.resolve()   # a symlink is written through: judge what it points to as well
    if (out.suffix.lower() == ".wav" or out_r.suffix.lower() == ".wav") and out_r.exists():
        to = f" (through the link to {out_r})" if out_r != out.absolute() else ""
        raise OutputError(f"{option} {path}: is a WAV file{to}; edgekws never overwrites a recording")
    for src, name in inputs:
        src_r = Path(src).resolve()
        if out_r == src_r:
            raise OutputError(f"{option} {path}: is the input {name}; choose another file")
        if src_r in out_r.parents:
            raise OutputError(f"{option} {path}: is inside the input folder {name} {src}; choose a file outside it")


def other_files(folder: str | os.PathLike, allowed=(), hidden: bool = False) -> str:
    """The names in `folder` besides `allowed` (and hidden ones unless `hidden`), as "a, b, c, ..."
    for an error message; "" when there are none (or no such folder)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir() if p.name not in allowed
                   and (hidden or not p.name.startswith("."))) if folder.is_dir() else []
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def not_a_folder(path, what: str) -> str | None:
    """None when `path` is a folder; else why not, for an error message: "is a file, not a WHAT" or
    "no such WHAT" (WHAT e.g. "dataset folder")."""
    path = Path(path)
    if path.is_dir():
        return None
    return f"is a file, not a {what}" if path.exists() else f"no such {what}"


def cannot_make_folder(path) -> str | None:
    """None when `path` is a folder this process can write in, or can be created as one; else why not,
    for an error message ("X is a file, not a folder", "X: permission denied"). Creates nothing."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                return f"{p} is a file, not a folder"
            return None if os.access(p, os.W_OK | os.X_OK) else f"{p}: permission denied"
    return None


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"{path}: cannot write ({_reason(exc)})")


def _reason(exc: OSError) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
        for p in (Path(exc.filename), *Path(exc.filename).parents):
            if p.exists() and not p.is_dir():  # mkdir's "File exists" means this
                return f"{p} is a file, not a folder"
    # the temp file beside the target is ours, not the user's: name only other places
    where = f" at {exc.filename}" if exc.filename and not Path(exc.filename).name.endswith(".tmp") else ""
    return f"{exc.strerror or exc}{where}"


def _file_mode(path: Path) -> int:
    """The permission bits the written file gets: those of the file it replaces, else 0666 less the umask
    (mkstemp creates 0600, which would hide a bundle from the other users of a Pi)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, overwrite: bool = True):
    """Open a temporary file beside `path`; on clean exit fsync and rename it to `path`.

    mode      : "wb" or "w" (text, UTF-8)
    overwrite : if False and `path` exists when the write completes, raise FileExistsError and
                keep the existing file (used for recordings, which are never overwritten).

    A symlink is written through (its target is replaced, the link stays). A path that exists and is
    not a regular file (a device such as /dev/stdout, a FIFO) is written in place: a rename would
    replace the device. Write failures raise OutputError naming the path.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    text = {"encoding": "utf-8"} if mode == "w" else {}
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.exists() and not path.is_file():
        if not overwrite:
            raise FileExistsError(errno.EEXIST, "exists", str(path))
        try:
            f = open(path, mode, **text)
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        flushed = False
        try:
            with _write_errors(path):   # a write larger than the buffer fails in the caller's f.write()
                yield f
            try:
                f.flush()   # a device's refusal (/dev/full) shows here, without a file name
            except OSError as exc:
                raise _cannot_write(path, exc) from None
            flushed = True
        finally:
            try:
                f.close()
            except OSError as exc:
                if flushed:
                    raise _cannot_write(path, exc) from None
        return
    if path.is_symlink():
        path = path.resolve()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, mode, **text) as f:
            with _write_errors(path):
                yield f
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:  # a full disk shows here
                raise _cannot_write(path, exc) from None
        os.chmod(tmp, _file_mode(path))
        if overwrite:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _cannot_write(path, exc) from None
        else:
            _publish_new(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# A full disk or a device that refuses: errors of the caller's f.write(), which carry no file name
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


@contextlib.contextmanager
def _write_errors(path: Path):
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno in _WRITE_ERRNOS:
            raise _cannot_write(path, exc) from None
        raise


# os.link's errors on file systems without hard links (FAT32/exFAT sticks, many SMB shares)
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS,
             errno.EINVAL}   # EINVAL: Windows on FAT


def _publish_new(tmp: str, path: Path) -> None:
    """Give the finished temporary file `tmp` the name `path`, which must not exist: FileExistsError
    if it does (also if it appeared meanwhile). A hard link does that in one step; where the file
    system has none, the name is reserved by an exclusive create and the file renamed onto it."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise _cannot_write(path, exc) from None
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            raise
        except OSError as exc2:
            raise _cannot_write(path, exc2) from None
        try:
            os.replace(tmp, path)
        except OSError as exc2:
            with contextlib.suppress(OSError):
                os.unlink(path)  # our empty reservation
            raise _cannot_write(path, exc2) from None
        return
    os.unlink(tmp)


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
