"""Build the firmware's C library for this host on demand and load it with ctypes.

Every firmware/src/*.c and firmware/generated/*.c goes into one shared library, so later issues
add C sources (kernels, model runner, detector, on-device head) without touching this module.
The library is cached under ~/.cache/edgekws/host-lib/<hash>/ (or $EDGEKWS_CACHE_DIR), keyed by
the hash of every source, header, the compiler and the flags: editing a C file triggers a rebuild.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from edgekws.errors import EdgekwsError
from edgekws.fileio import atomic_write_text, make_dir

# No -Werror here: a newer compiler's new warning must not stop users; `make -C firmware` keeps -Werror.
# -ffp-contract=off: no fused multiply-add, so the head trainer's float32 has numpy's bits (head.h);
# GCC's -std=c99 implies it, clang's does not (macOS arm64, a Pi with CC=clang).
CFLAGS = ["-std=c99", "-ffp-contract=off", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra"]
SOURCE_KEY = "source-key"   # in each cache folder: the key without the compiler, for a machine without one
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


class FirmwareBuildError(EdgekwsError):
    """The C library cannot be found, compiled or loaded."""


def firmware_dir() -> Path:
    """The firmware/ source tree: $EDGEKWS_FIRMWARE_DIR, else beside the package (editable install),
    else beside its folder (a Raspberry Pi folder of `edgekws export --target pi`: python/edgekws and
    firmware/ side by side)."""
    env = os.environ.get("EDGEKWS_FIRMWARE_DIR")
    if env:   # asked for by name: never silently another tree
        if (Path(env) / "include" / "ekws").is_dir() and (Path(env) / "src").is_dir():
            return Path(env)
        raise FirmwareBuildError(f"EDGEKWS_FIRMWARE_DIR={env}: not a firmware tree (no include/ekws/ and src/ in it)")
    candidates = []
    here = Path(__file__).resolve()
    candidates += [here.parents[1] / "firmware", here.parents[2] / "firmware"]
    for c in candidates:
        if (c / "include" / "ekws").is_dir() and (c / "src").is_dir():
            return c
    raise FirmwareBuildError(
        f"firmware sources not found (looked in {', '.join(str(c) for c in candidates)}); "
        "use an editable install of the edgekws repository or set EDGEKWS_FIRMWARE_DIR"
    )


def find_compiler() -> list[str]:
    """The C compiler command: $CC (with its own arguments, e.g. "clang -m32"), else cc, gcc or clang
    on PATH."""
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for name in names:
        try:
            words = shlex.split(name)
        except ValueError as exc:   # CC='"gcc'
            raise FirmwareBuildError(f"CC={name}: cannot be split into words ({exc})") from None
        path = shutil.which(words[0]) if words else None
        if path:
            return [path, *words[1:]]
    raise FirmwareBuildError(
        f"no C compiler found (tried {', '.join(names)}); install one, e.g. `apt-get install gcc`, "
        "or set CC"
    )


def sources(root: Path | None = None) -> list[Path]:
    """C sources compiled into the host library, sorted."""
    root = root or firmware_dir()
    return sorted((root / "src").glob("*.c")) + sorted((root / "generated").glob("*.c"))


def _cache_root() -> Path:
    env = os.environ.get("EDGEKWS_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgekws"
    return base / "host-lib"


def _build_key(root: Path, cc: list[str] | None, extra: list[str]) -> str:
    """The hash of every source and header, the flags, the platform and (unless None) the compiler."""
    h = hashlib.sha256()
    files = sources(root) + sorted((root / "include").rglob("*.h")) + sorted((root / "generated").glob("*.h"))
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(" ".join([*(cc or []), *CFLAGS, *extra, sys.platform]).encode())
    return h.hexdigest()[:20]


def _cached_without_compiler(root: Path, extra: list[str], suffix: str) -> Path | None:
    """A library built earlier from these very sources and flags (by whatever compiler), newest first."""
    key = _build_key(root, None, extra)
    found = [d / f"libekws{suffix}" for d in _cache_root().glob("*")
             if (d / SOURCE_KEY).is_file() and (d / SOURCE_KEY).read_text().strip() == key
             and (d / f"libekws{suffix}").is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def build_library(extra_flags: list[str] | None = None, *, verbose: bool = False) -> Path:
    """Compile (if not cached) and return the path of the host shared library.

    extra_flags : more compiler flags, e.g. ["-DEKWS_FRONTEND_MAX_FFT=1024"] (part of the cache key)
    """
    extra = list(extra_flags or [])
    root = firmware_dir()
    srcs = sources(root)
    if not srcs:
        raise FirmwareBuildError(f"no C sources in {root / 'src'}")
    suffix = ".dll" if sys.platform == "win32" else (".dylib" if sys.platform == "darwin" else ".so")
    try:
        cc = find_compiler()
    except FirmwareBuildError:   # a Pi whose compiler went away after the first build: use that build
        if cached := _cached_without_compiler(root, extra, suffix):
            return cached
        raise
    out_dir = _cache_root() / _build_key(root, cc, extra)
    lib = out_dir / f"libekws{suffix}"
    if lib.is_file():
        return lib
    make_dir(out_dir)
    fd, tmp = tempfile.mkstemp(prefix=".libekws.", suffix=suffix, dir=out_dir)
    os.close(fd)
    cmd = [*cc, *CFLAGS, *extra, f"-I{root / 'include'}", f"-I{root / 'generated'}", *map(str, srcs), "-o", tmp]
    if verbose:
        print(" ".join(cmd), file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FirmwareBuildError(f"compiling the firmware library failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
        os.chmod(tmp, 0o755)   # mkstemp made it 0600: other users of a shared cache must load it too
        os.replace(tmp, lib)  # atomic: concurrent builders race harmlessly
        atomic_write_text(out_dir / SOURCE_KEY, _build_key(root, None, extra) + "\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def load_library(extra_flags: list[str] | None = None) -> ctypes.CDLL:
    """Build if needed and load the host library (one handle per flag set per process)."""
    key = " ".join(extra_flags or [])
    with _lock:
        if key not in _loaded:
            path = build_library(extra_flags)
            try:
                _loaded[key] = ctypes.CDLL(str(path))
            except OSError as exc:
                raise FirmwareBuildError(f"cannot load {path}: {exc}") from None
        return _loaded[key]
