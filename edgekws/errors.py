"""The error types a user can meet. Each message names the file or argument and the problem.

The CLI catches `EdgekwsError` and prints its message without a traceback; anything else is a bug.
`is_int` / `is_real` are the one type test of the argument checks that raise them.
"""

from __future__ import annotations

import importlib

import numpy as np


def is_int(v, numpy: bool = True) -> bool:
    """An integer argument: a Python int, or with `numpy` a numpy integer too; never a bool
    (True == 1 would pass for a count). Values bound for JSON take numpy=False."""
    return isinstance(v, (int, np.integer) if numpy else int) and not isinstance(v, bool)


def is_real(v, numpy: bool = True) -> bool:
    """A real-number argument: an int or float (numpy's too, with `numpy`); never a bool. NaN and the
    infinities pass: range checks refuse them."""
    kinds = (int, float, np.integer, np.floating) if numpy else (int, float)
    return isinstance(v, kinds) and not isinstance(v, bool)


class EdgekwsError(Exception):
    """Base class of every error caused by user input, files or the environment."""


class AudioError(EdgekwsError):
    """A WAV file (or audio buffer) that cannot be read, or audio that cannot be written."""


class DatasetError(EdgekwsError):
    """A dataset folder that does not follow the Speech Commands layout or holds no usable data."""


class BundleError(EdgekwsError):
    """A model bundle that is missing, corrupt, truncated or of an unsupported format version."""


class MissingDependencyError(EdgekwsError):
    """An optional package (TTS engine, PortAudio, matplotlib, ...) that a command needs is absent."""


def require(module: str, install_hint: str, what: str | None = None):
    """Import an optional module lazily, or raise MissingDependencyError saying what to install.

    module       : importable name, e.g. "matplotlib.pyplot"
    install_hint : the command that fixes it, e.g. 'pip install "edgekws[plot]"'
    what         : what it is needed for, e.g. "plots in edgekws report"
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:  # OSError: a wheel present but its shared library is missing
        need = f" for {what}" if what else ""
        raise MissingDependencyError(
            f"{module} is needed{need} but cannot be imported ({exc}); install it with: {install_hint}"
        ) from None
