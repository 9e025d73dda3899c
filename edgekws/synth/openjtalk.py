"""Open JTalk through `pyopenjtalk-plus`: Japanese speech from the bundled HTS voice "Mei".

One real voice ships (mei_normal, CC BY 3.0, Nagoya Institute of Technology). Pseudo-speakers come
from three knobs: `half_tone` (pitch shift), `speed`, and `alpha`, the all-pass (frequency-warping)
constant of the mel-cepstrum that acts like vocal-tract length. `alpha` is not in the Python API,
so each value gets its own engine loaded from a copy of the voice file whose `ALPHA=0.55` header
text is replaced by a value of the same length. Engines are cached per process.

The leading and trailing `sil` labels are dropped before synthesis: about 3x faster and the same
waveform up to gain. The package is imported lazily (it is ~400 MB and optional).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.errors import require as _require_module

INSTALL_HINT = 'pip install "edgekws[synth]"'
DEFAULT_ALPHA = 0.55
ALPHA_RANGE = (0.40, 0.70)   # patched as two decimals; outside this range the voice degrades

_module = None
_engines: dict[str, object] = {}
_labels: dict[str, list[str]] = {}


def _pyopenjtalk():
    global _module
    if _module is None:
        with contextlib.redirect_stdout(io.StringIO()):  # it may print an ONNX Runtime notice
            _module = _require_module("pyopenjtalk", INSTALL_HINT, "Open JTalk speech synthesis")
    return _module


def require():
    """The pyopenjtalk module, or MissingDependencyError saying what to install."""
    return _pyopenjtalk()


def available() -> bool:
    try:
        _pyopenjtalk()
    except EdgekwsError:
        return False
    return True


def voice_path() -> str:
    return os.path.join(os.path.dirname(_pyopenjtalk().__file__), "htsvoice", "mei_normal.htsvoice")


def _engine(alpha: float):
    key = f"{alpha:.2f}"
    if key not in _engines:
        if not ALPHA_RANGE[0] <= float(key) <= ALPHA_RANGE[1]:
            raise EdgekwsError(f"Open JTalk alpha {alpha} is outside {ALPHA_RANGE}")
        with open(voice_path(), "rb") as f:
            data = f.read()
        marker = b"ALPHA=%.2f" % DEFAULT_ALPHA
        if marker not in data:
            raise EdgekwsError(f"{voice_path()}: no {marker.decode()} header to patch "
                               "(unexpected pyopenjtalk-plus voice file)")
        fd, tmp = tempfile.mkstemp(prefix="edgekws_mei_", suffix=".htsvoice")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.replace(marker, b"ALPHA=" + key.encode(), 1))
            _engines[key] = _pyopenjtalk().HTSEngine(tmp.encode())   # the model is read into memory
        finally:
            os.unlink(tmp)
    return _engines[key]


def labels(text: str) -> list[str]:
    """Full-context labels of `text` without the leading/trailing silence (cached per text)."""
    if text not in _labels:
        lab = list(_pyopenjtalk().extract_fullcontext(text))
        if lab and "-sil+" in lab[0]:
            lab = lab[1:]
        if lab and "-sil+" in lab[-1]:
            lab = lab[:-1]
        if not lab:
            raise EdgekwsError(f"Open JTalk found nothing to say in {text!r}")
        _labels[text] = lab
    return _labels[text]


def to_kana(text: str) -> str:
    """Katakana reading of Japanese text (kanji included), e.g. for eSpeak, which reads only kana."""
    return _pyopenjtalk().g2p(text, kana=True)


def synthesize(text: str, speed: float = 1.0, half_tone: float = 0.0,
               alpha: float = DEFAULT_ALPHA) -> tuple[np.ndarray, int]:
    """Speak Japanese `text` (kana or kanji) with the Mei voice.

    speed     : 0.5-2.0 (1 = natural); half_tone: pitch shift in semitones; alpha: all-pass constant
    returns   : ((n,) float64 samples — peaks may exceed int16 full scale — , 48000)
    """
    eng = _engine(alpha)
    eng.set_speed(float(speed))          # synthesize() refreshes the engine: set both every call
    eng.add_half_tone(float(half_tone))
    x = np.asarray(eng.synthesize(labels(text)), dtype=np.float64)
    return x, int(eng.get_sampling_frequency())

