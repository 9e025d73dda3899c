"""The C int8 runtime from Python (ctypes over edgekws.firmware's host library): run a model blob
exactly as the firmware does, and call the requantization rule / kernels directly in tests.

    m = CModel(model_blob(qm)); logits = m.logits_int8(features)   # (N, T, F) int8 -> (N, K) int8
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgekws.errors import EdgekwsError, is_int

_i8p = ctypes.POINTER(ctypes.c_int8)
_configured: set[int] = set()


def library():
    """The host library with the model/kernel prototypes declared."""
    from edgekws.firmware import load_library

    lib = load_library()
    if id(lib) not in _configured:
        lib.ekws_model_check.restype = ctypes.c_char_p
        lib.ekws_model_check.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.ekws_model_arena_size.restype = ctypes.c_size_t
        lib.ekws_model_arena_size.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.ekws_model_struct_size.restype = ctypes.c_size_t
        lib.ekws_model_init.restype = ctypes.c_int
        lib.ekws_model_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                        ctypes.c_size_t]
        lib.ekws_model_invoke.restype = ctypes.c_int
        lib.ekws_model_invoke.argtypes = [ctypes.c_void_p, _i8p, ctypes.c_size_t, _i8p, ctypes.c_size_t]
        lib.ekws_model_invoke_search.restype = ctypes.c_int
        lib.ekws_model_invoke_search.argtypes = [ctypes.c_void_p, _i8p, ctypes.c_size_t, ctypes.c_uint32,
                                                 ctypes.c_uint32, _i8p, ctypes.c_size_t, _i8p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32)]
        lib.ekws_model_calibrate_shift.restype = ctypes.c_int
        lib.ekws_model_calibrate_shift.argtypes = [ctypes.c_void_p, _i8p, ctypes.c_size_t, ctypes.c_uint32, _i8p,
                                                   ctypes.c_size_t, ctypes.POINTER(ctypes.c_int32),
                                                   ctypes.POINTER(ctypes.c_float)]
        lib.ekws_model_embedding_size.restype = ctypes.c_uint32
        lib.ekws_model_embedding_size.argtypes = [ctypes.c_void_p]
        lib.ekws_model_embed.restype = ctypes.c_int
        lib.ekws_model_embed.argtypes = [ctypes.c_void_p, _i8p, ctypes.c_size_t, _i8p, ctypes.c_size_t]
        lib.ekws_model_invoke_voice.restype = ctypes.c_int
        lib.ekws_model_invoke_voice.argtypes = [ctypes.c_void_p, _i8p, ctypes.c_size_t,
                                                ctypes.POINTER(ctypes.c_int32), ctypes.c_size_t, _i8p,
                                                ctypes.c_size_t]
        lib.ekws_voice_offset.restype = ctypes.c_int
        lib.ekws_voice_offset.argtypes = [_i8p, ctypes.c_size_t, ctypes.c_size_t, ctypes.POINTER(ctypes.c_float),
                                          ctypes.POINTER(ctypes.c_int32)]
        lib.ekws_requantize_s8.restype = ctypes.c_int32
        lib.ekws_requantize_s8.argtypes = [ctypes.c_int32] * 7
        lib.ekws_crc32.restype = ctypes.c_uint32
        lib.ekws_crc32.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
        lib.ekws_status_str.restype = ctypes.c_char_p
        lib.ekws_status_str.argtypes = [ctypes.c_int]
        _configured.add(id(lib))
    return lib


def _status(lib, st: int) -> str:
    return lib.ekws_status_str(st).decode()


class CModel:
    """A model blob bound to its own arena in the host library."""

    def __init__(self, blob: bytes, arena_size: int | None = None):
        lib = self.lib = library()
        words = (len(blob) + 3) // 4
        self._blob = (ctypes.c_uint32 * max(words, 1))()  # 4-byte aligned copy
        ctypes.memmove(self._blob, blob, len(blob))
        why = lib.ekws_model_check(self._blob, len(blob))
        if why is not None:
            raise EdgekwsError(f"model blob rejected by the C runtime: {why.decode()}")
        self.arena_size = int(lib.ekws_model_arena_size(self._blob, len(blob)))
        if arena_size is not None and (not is_int(arena_size, numpy=False) or not 0 <= arena_size < 2 ** 31):
            raise EdgekwsError(f"C model: arena_size must be an integer in [0, 2^31), got {arena_size!r}")
        size = self.arena_size if arena_size is None else arena_size
        self._arena = (ctypes.c_uint32 * max((size + 3) // 4, 1))()
        self._model = ctypes.create_string_buffer(int(lib.ekws_model_struct_size()))
        st = lib.ekws_model_init(self._model, self._blob, len(blob), self._arena, size)
        if st != 0:
            raise EdgekwsError(f"ekws_model_init failed: {_status(lib, st)}")
        header = np.frombuffer(blob[:64], "<i4")
        self.input_size = int(header[8] * header[9] * header[10])
        self.num_classes = int(header[12])

    def _examples(self, features: np.ndarray) -> np.ndarray:
        """features (N, ...) int8 -> (N, input_size) contiguous (N may be 0), or a clear error."""
        x = np.asarray(features)
        if x.dtype != np.int8:   # a cast would wrap int16 200 to -56: logits of other features
            raise EdgekwsError(f"C model: features must be int8, got {x.dtype}")
        if x.ndim and not len(x):   # no windows: no logits, as the numpy engine
            return np.zeros((0, self.input_size), np.int8)
        x = np.ascontiguousarray(x).reshape(len(x), -1)
        if x.shape[1] != self.input_size:
            raise EdgekwsError(f"C model: {x.shape[1]} feature values per example, expected {self.input_size}")
        return x

    def logits_int8(self, features: np.ndarray) -> np.ndarray:
        """features (N, ...) int8 with input_size values per example -> logits (N, K) int8."""
        x = self._examples(features)
        out = np.zeros((len(x), self.num_classes), np.int8)
        for i in range(len(x)):
            st = self.lib.ekws_model_invoke(self._model, x[i].ctypes.data_as(_i8p), self.input_size,
                                            out[i].ctypes.data_as(_i8p), self.num_classes)
            if st != 0:
                raise EdgekwsError(f"ekws_model_invoke failed: {_status(self.lib, st)}")
        return out

    def search_int8(self, features: np.ndarray, max_shift: int,
                    rate_search: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ekws_model_invoke_search on each example: (logits (N, K) int8 where the model is surest,
        band shifts (N,), rates (N,) Q8)."""
        x = self._examples(features)
        out = np.zeros((len(x), self.num_classes), np.int8)
        shifts = np.zeros(len(x), np.int64)
        rates = np.zeros(len(x), np.int64)
        scratch = np.zeros(2 * self.input_size + self.num_classes, np.int8)
        chosen, rate = ctypes.c_int32(0), ctypes.c_int32(0)
        for i in range(len(x)):
            st = self.lib.ekws_model_invoke_search(self._model, x[i].ctypes.data_as(_i8p), self.input_size,
                                                   int(max_shift), int(rate_search), scratch.ctypes.data_as(_i8p),
                                                   scratch.size, out[i].ctypes.data_as(_i8p), self.num_classes,
                                                   ctypes.byref(chosen), ctypes.byref(rate))
            if st != 0:
                raise EdgekwsError(f"ekws_model_invoke_search failed: {_status(self.lib, st)}")
            shifts[i], rates[i] = chosen.value, rate.value
        return out, shifts, rates

    @property
    def embedding_size(self) -> int:
        """Values of the embedding, the last layer's input (0: the model has none of its own)."""
        return int(self.lib.ekws_model_embedding_size(self._model))

    def embed_int8(self, features: np.ndarray) -> np.ndarray:
        """ekws_model_embed on each example: (N, embedding_size) int8."""
        x = self._examples(features)
        out = np.zeros((len(x), self.embedding_size), np.int8)
        for i in range(len(x)):
            st = self.lib.ekws_model_embed(self._model, x[i].ctypes.data_as(_i8p), self.input_size,
                                           out[i].ctypes.data_as(_i8p), out.shape[1])
            if st != 0:
                raise EdgekwsError(f"ekws_model_embed failed: {_status(self.lib, st)}")
        return out

    def logits_voice_int8(self, features: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """ekws_model_invoke_voice on each example with its row of offsets (N, embedding_size) int32:
        logits (N, K) int8."""
        x = self._examples(features)
        offs = np.ascontiguousarray(offsets, np.int32)
        if offs.shape != (len(x), self.embedding_size):
            raise EdgekwsError(f"C model: offsets of shape {offs.shape}, expected {(len(x), self.embedding_size)}")
        out = np.zeros((len(x), self.num_classes), np.int8)
        for i in range(len(x)):
            st = self.lib.ekws_model_invoke_voice(self._model, x[i].ctypes.data_as(_i8p), self.input_size,
                                                  offs[i].ctypes.data_as(ctypes.POINTER(ctypes.c_int32)),
                                                  offs.shape[1], out[i].ctypes.data_as(_i8p), self.num_classes)
            if st != 0:
                raise EdgekwsError(f"ekws_model_invoke_voice failed: {_status(self.lib, st)}")
        return out

    def calibrate_shift(self, features: np.ndarray, max_shift: int) -> tuple[int, float]:
        """ekws_model_calibrate_shift over all examples: (the chosen band shift, its mean largest
        class probability, float32)."""
        x = np.ascontiguousarray(self._examples(features))
        scratch = np.zeros(self.input_size + self.num_classes, np.int8)
        chosen, score = ctypes.c_int32(0), ctypes.c_float(0.0)
        st = self.lib.ekws_model_calibrate_shift(self._model, x.ctypes.data_as(_i8p), len(x), int(max_shift),
                                                 scratch.ctypes.data_as(_i8p), scratch.size, ctypes.byref(chosen),
                                                 ctypes.byref(score))
        if st != 0:
            raise EdgekwsError(f"ekws_model_calibrate_shift failed: {_status(self.lib, st)}")
        return int(chosen.value), float(score.value)


def voice_offset_c(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """ekws_voice_offset: a voice's int32 offset from its embeddings (N, E) int8 and the float32
    reference (E,) (edgekws.voicenorm.offset_of with that reference gives the same values)."""
    lib = library()
    e = np.ascontiguousarray(embeddings, np.int8)
    ref = np.ascontiguousarray(reference, np.float32)
    if e.ndim != 2 or ref.shape != (e.shape[1],):
        raise EdgekwsError(f"voice offset: embeddings {e.shape} and reference {ref.shape} do not match")
    out = np.zeros(e.shape[1], np.int32)
    st = lib.ekws_voice_offset(e.ctypes.data_as(_i8p), e.shape[0], e.shape[1],
                               ref.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                               out.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)))
    if st != 0:
        raise EdgekwsError(f"ekws_voice_offset failed: {_status(lib, st)}")
    return out


def requantize_c(acc, bias, multiplier, shift, zp, act_min, act_max) -> int:
    """The C rule on one value (for equality tests with the numpy and ONNX versions)."""
    return int(library().ekws_requantize_s8(int(acc), int(bias), int(multiplier), int(shift), int(zp),
                                            int(act_min), int(act_max)))
