"""eSpeak NG through ctypes, loaded from the `espeakng-loader` wheel (never the system library).

eSpeak NG keeps one global engine per process and is not thread-safe, so the dataset generator
runs it in worker processes. It also keeps hidden state across utterances: the pitch-flutter
phase is a function-level static, and breathy/Klatt voices draw noise from the C library's global
`rand()`. So the same call twice gives slightly different audio. For reproducible datasets:
* `session()` loads a private copy of the library (a temporary copy of the .so, so no other user
  shares its statics), and terminates and unloads it at the end: the audio of a sequence of calls
  in one session depends only on that sequence (a fresh voice load costs ~6 ms);
* every utterance first reseeds the C library's `rand()` (process-global: POSIX only);
* `synthesize()` runs one utterance in its own session, so it is a pure function of its arguments.
The library is GPL-3.0-or-later; edgekws never vendors it, it only loads the wheel a user installed.

Japanese must be given as kana (eSpeak drops kanji). Parameters persist across calls in eSpeak,
so `synthesize` sets every one of them on every call.
"""

from __future__ import annotations

import contextlib
import ctypes as C
import os
import shutil
import tempfile
import threading

import numpy as np

from edgekws.errors import EdgekwsError, require

INSTALL_HINT = 'pip install "edgekws[synth]"'

# English accents (eSpeak language names) used for speaker variety.
EN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc",
              "en-gb-x-gbclan", "en-gb-x-gbcwmd")

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000       # without it a bad data path calls exit(1) and kills Python
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4   # espeak_PARAMETER values
_SYNTH_CB = C.CFUNCTYPE(C.c_int, C.POINTER(C.c_short), C.c_int, C.c_void_p)


_libc = None


def _seed_c_rand() -> None:
    """Reseed the C library's rand(), which eSpeak NG uses for noise (breathy and Klatt voices)."""
    global _libc
    if os.name != "posix":
        return
    if _libc is None:
        _libc = C.CDLL(None)
        _libc.srand.argtypes = [C.c_uint]
    _libc.srand(1)


_lock = threading.RLock()    # one engine at a time in a process (eSpeak NG is not thread-safe)


def _loader():
    return require("espeakng_loader", INSTALL_HINT, "eSpeak NG speech synthesis")


def _load_private_copy(src: str) -> C.CDLL:
    """dlopen a temporary copy of the library, so its static state is ours alone and starts fresh.
    Falls back to the original file where a temporary file cannot be loaded (noexec /tmp)."""
    fd, tmp = tempfile.mkstemp(prefix="edgekws_espeak_", suffix=os.path.splitext(src)[1])
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        return C.CDLL(tmp)
    except OSError:
        try:
            return C.CDLL(src)                 # unloaded after each use, so still fresh
        except OSError as exc:
            raise EdgekwsError(f"cannot load eSpeak NG from {src} ({exc}); "
                               f"reinstall it with: {INSTALL_HINT}") from None
    finally:
        try:
            os.unlink(tmp)                     # stays mapped; on Windows the unlink may fail
        except OSError:
            pass


def _unload(lib: C.CDLL) -> None:
    try:
        import _ctypes
        (_ctypes.dlclose if hasattr(_ctypes, "dlclose") else _ctypes.FreeLibrary)(lib._handle)
    except (ImportError, AttributeError, OSError):
        pass                                   # left mapped: costs memory, not correctness


class _Engine:
    """A freshly loaded private eSpeak NG: library handle, callback (kept alive), sample rate.

    Use once, then `close()`: terminates the engine and unloads the library copy.
    """

    def __init__(self):
        loader = _loader()
        self.data_path = loader.get_data_path()
        src = loader.get_library_path()        # full path: a system libespeak-ng may differ
        lib = _load_private_copy(src)
        lib.espeak_Initialize.argtypes = [C.c_int, C.c_int, C.c_char_p, C.c_int]
        lib.espeak_Initialize.restype = C.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CB]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [C.c_char_p]
        lib.espeak_SetVoiceByName.restype = C.c_int
        lib.espeak_SetParameter.argtypes = [C.c_int, C.c_int, C.c_int]
        lib.espeak_SetParameter.restype = C.c_int
        lib.espeak_Synth.argtypes = [C.c_char_p, C.c_size_t, C.c_uint, C.c_int, C.c_uint,
                                     C.c_uint, C.POINTER(C.c_uint), C.c_void_p]
        lib.espeak_Synth.restype = C.c_int
        self.lib = lib
        self._chunks: list[np.ndarray] = []

        def on_audio(wav, n, _events):
            if wav and n > 0:                   # wav is NULL at the end; n may be 0 mid-stream
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())  # reused buffer
            return 0                            # 1 would abort synthesis

        self._callback = _SYNTH_CB(on_audio)    # must outlive the engine, or eSpeak calls freed memory
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path.encode(),
                                   _INITIALIZE_DONT_EXIT)
        if sr <= 0:                             # 0, not -1, when the data path is wrong
            _unload(lib)
            raise EdgekwsError(f"eSpeak NG failed to initialise with data at {self.data_path}; "
                               f"reinstall it with: {INSTALL_HINT}")
        self.sample_rate = int(sr)
        lib.espeak_SetSynthCallback(self._callback)
        if hasattr(lib, "espeak_ng_SetRandSeed"):   # its noise generator, in case it is not reset
            lib.espeak_ng_SetRandSeed.argtypes = [C.c_long]
            lib.espeak_ng_SetRandSeed(1)

    def close(self) -> None:
        self.lib.espeak_Terminate()
        _unload(self.lib)

    def synthesize(self, text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
                   prange: int = 50) -> tuple[np.ndarray, int]:
        """One utterance; same arguments as the module-level `synthesize`."""
        if "+" in voice and voice.split("+", 1)[1] not in variants():
            # eSpeak silently ignores an unknown variant; refuse it instead
            raise EdgekwsError(f"unknown eSpeak NG voice variant in {voice!r}")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EdgekwsError(f"unknown eSpeak NG voice {voice!r}")
        for param, value in ((_RATE, rate), (_VOLUME, 100), (_PITCH, pitch), (_RANGE, prange)):
            self.lib.espeak_SetParameter(param, int(value), 0)   # 0 = absolute value
        self._chunks.clear()
        _seed_c_rand()
        data = text.encode("utf-8")
        if self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8,
                                 None, None) != 0:
            raise EdgekwsError(f"eSpeak NG failed to synthesize {text!r} with voice {voice!r}")
        out = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._chunks.clear()
        return out.astype(np.int16, copy=False), self.sample_rate


_variants: tuple[str, ...] | None = None


def variants() -> tuple[str, ...]:
    """Names of the voice variants shipped in espeak-ng-data/voices/!v (sorted)."""
    global _variants
    if _variants is None:
        folder = os.path.join(_loader().get_data_path(), "voices", "!v")
        try:
            _variants = tuple(sorted(os.listdir(folder)))
        except OSError as exc:
            raise EdgekwsError(f"{folder}: cannot list eSpeak NG voice variants ({exc}); "
                               f"reinstall with: {INSTALL_HINT}") from None
    return _variants


def available() -> bool:
    try:
        variants()
    except EdgekwsError:
        return False
    return True


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
               prange: int = 50) -> tuple[np.ndarray, int]:
    """Speak `text` with an eSpeak NG voice, from a freshly loaded engine (same call → same audio).

    voice  : "<language>[+<variant>]", e.g. "en-us", "en-gb-x-rp+f3", "ja+klatt" (Japanese: kana)
    rate   : words per minute (80-450); pitch, prange: 0-100
    returns: ((n,) int16 samples, sample rate in Hz — 22050 for the shipped data)
    """
    with session() as tts:
        return tts.synthesize(text, voice, rate, pitch, prange)


@contextlib.contextmanager
def session():
    """A freshly loaded private engine for a sequence of `.synthesize(...)` calls; unloaded at exit.

    The audio depends only on the sequence of calls made in the session.
    """
    with _lock:
        eng = _Engine()
        try:
            yield eng
        finally:
            eng.close()
