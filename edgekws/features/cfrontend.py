"""CFrontend: the C frontend (firmware/src/frontend.c) through ctypes, with StreamingFrontend's API.

The tables are handed over from Python (FeatureConfig.tables), so any config the C build has room
for (fft_size <= EKWS_FRONTEND_MAX_FFT) runs in C, not only the generated default.
"""

from __future__ import annotations

import ctypes as C

import numpy as np

from edgekws.errors import AudioError, EdgekwsError
from edgekws.features.config import FeatureConfig

_P = C.POINTER


class _Params(C.Structure):
    _fields_ = [
        ("window_len", C.c_uint32),
        ("hop_len", C.c_uint32),
        ("fft_size", C.c_uint32),
        ("log2_fft", C.c_uint32),
        ("num_bands", C.c_uint32),
        ("preemph_q15", C.c_int32),
        ("out_mult", C.c_int32),
        ("out_offset", C.c_int32),
        ("out_shift", C.c_int32),
        ("window", _P(C.c_int16)),
        ("twiddle_cos", _P(C.c_int32)),
        ("twiddle_sin", _P(C.c_int32)),
        ("bitrev", _P(C.c_uint16)),
        ("band_start", _P(C.c_uint16)),
        ("band_len", _P(C.c_uint16)),
        ("band_offset", _P(C.c_uint16)),
        ("band_weights", _P(C.c_uint16)),
        ("log2_frac", _P(C.c_uint16)),
    ]


_TABLES = {
    "window": (np.int16, C.c_int16),
    "twiddle_cos": (np.int32, C.c_int32),
    "twiddle_sin": (np.int32, C.c_int32),
    "bitrev": (np.uint16, C.c_uint16),
    "band_start": (np.uint16, C.c_uint16),
    "band_len": (np.uint16, C.c_uint16),
    "band_offset": (np.uint16, C.c_uint16),
    "band_weights": (np.uint16, C.c_uint16),
    "log2_frac": (np.uint16, C.c_uint16),
}


def _bind(lib: C.CDLL) -> C.CDLL:
    if getattr(lib, "_ekws_frontend_bound", False):
        return lib
    lib.ekws_frontend_state_size.restype = C.c_size_t
    lib.ekws_frontend_init.argtypes = [C.c_void_p, _P(_Params)]
    lib.ekws_frontend_init.restype = C.c_int
    lib.ekws_frontend_reset.argtypes = [C.c_void_p]
    lib.ekws_frontend_reset.restype = None
    lib.ekws_frontend_frames_for.argtypes = [C.c_void_p, C.c_size_t]
    lib.ekws_frontend_frames_for.restype = C.c_size_t
    lib.ekws_frontend_push.argtypes = [C.c_void_p, C.c_void_p, C.c_size_t, C.c_void_p, C.c_size_t, _P(C.c_size_t)]
    lib.ekws_frontend_push.restype = C.c_int
    lib.ekws_status_str.argtypes = [C.c_int]
    lib.ekws_status_str.restype = C.c_char_p
    lib._ekws_frontend_bound = True
    return lib


class CFrontend:
    """Streaming frontend running in the host C library (same API as StreamingFrontend)."""

    def __init__(self, cfg: FeatureConfig | None = None, lib: C.CDLL | None = None):
        from edgekws.firmware import load_library

        self.cfg = cfg or FeatureConfig()
        self._lib = _bind(lib or load_library())
        t = self.cfg.tables
        self._keep = {name: np.ascontiguousarray(getattr(t, name), dtype=dt) for name, (dt, _) in _TABLES.items()}
        ptrs = {name: a.ctypes.data_as(_P(_TABLES[name][1])) for name, a in self._keep.items()}
        self._params = _Params(
            window_len=self.cfg.window_len,
            hop_len=self.cfg.hop_len,
            fft_size=self.cfg.fft_size,
            log2_fft=self.cfg.fft_size.bit_length() - 1,
            num_bands=self.cfg.num_bands,
            preemph_q15=t.preemph_q15,
            out_mult=t.out_mult,
            out_offset=t.out_offset,
            out_shift=t.out_shift,
            **ptrs,
        )
        self._state = C.create_string_buffer(self._lib.ekws_frontend_state_size())
        self._check(self._lib.ekws_frontend_init(self._state, C.byref(self._params)), "init")

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            msg = self._lib.ekws_status_str(status).decode()
            raise EdgekwsError(f"C frontend {what}: {msg} (config {self.cfg.config_hash()})")

    def reset(self) -> None:
        self._lib.ekws_frontend_reset(self._state)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """samples: (n,) int16 -> (k, num_bands) int8 completed frames."""
        s = np.asarray(samples)
        if s.dtype != np.int16 or s.ndim != 1:
            raise AudioError(f"CFrontend.push: expected (n,) int16 samples, got {s.dtype} {s.shape}")
        s = np.ascontiguousarray(s)
        cap = self._lib.ekws_frontend_frames_for(self._state, s.size)
        out = np.empty((cap, self.cfg.num_bands), dtype=np.int8)
        got = C.c_size_t(0)
        self._check(
            self._lib.ekws_frontend_push(self._state, s.ctypes.data, s.size, out.ctypes.data, cap, C.byref(got)), "push"
        )
        return out[: got.value]
