"""The C head trainer of firmware/src/head.c from Python (ctypes over edgekws.firmware's host
library): `edgekws retrain --engine c`, the Raspberry Pi path, and the parity tests.

CHeadTrainer has the API of headmath.HeadTrainer; CHead loads a head blob as the device does.
"""

from __future__ import annotations

import ctypes

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.retrain.headmath import HeadConfig, QHead, blob_size, check_examples, check_order, check_rows

_f32p = ctypes.POINTER(ctypes.c_float)
_i8p = ctypes.POINTER(ctypes.c_int8)
_u16p = ctypes.POINTER(ctypes.c_uint16)
_configured: set[int] = set()


class _Config(ctypes.Structure):
    _fields_ = [("num_classes", ctypes.c_uint32), ("embed_size", ctypes.c_uint32),
                ("max_examples", ctypes.c_uint32), ("batch", ctypes.c_uint32), ("seed", ctypes.c_uint32),
                ("lr", ctypes.c_float), ("momentum", ctypes.c_float), ("weight_decay", ctypes.c_float),
                ("imprint_scale", ctypes.c_float)]


class _Trainer(ctypes.Structure):
    """Leading fields of ekws_head_trainer_t (the pointers follow; the struct is sized by C)."""

    _fields_ = [("cfg", _Config), ("emb_scale", ctypes.c_float), ("emb_zp", ctypes.c_int32),
                ("num_examples", ctypes.c_uint32), ("rng", ctypes.c_uint32), ("epochs", ctypes.c_uint32),
                ("standardized", ctypes.c_uint32), ("train_ready", ctypes.c_uint32), ("weight", _f32p),
                ("bias", _f32p)]


def library():
    """The host library with the ekws_head_* prototypes declared."""
    from edgekws.export.cruntime import library as model_library

    lib = model_library()
    if id(lib) not in _configured:
        sz, u32, vp, st = ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int
        protos = {
            "ekws_head_workspace_size": (sz, [u32, u32, u32]),
            "ekws_head_train_size": (sz, [u32, u32]),
            "ekws_head_store_size": (sz, [u32, u32, u32]),
            "ekws_head_trainer_struct_size": (sz, []),
            "ekws_head_struct_size": (sz, []),
            "ekws_head_trainer_init": (st, [vp, ctypes.POINTER(_Config), vp, sz, ctypes.c_float, ctypes.c_int32]),
            "ekws_head_add_example": (st, [vp, _i8p, sz, u32]),
            "ekws_head_set_weights": (st, [vp, _f32p, _f32p]),
            "ekws_head_imprint": (st, [vp]),
            "ekws_head_standardize": (st, [vp]),
            "ekws_head_gradient": (st, [vp, _u16p, u32, _f32p]),
            "ekws_head_step": (st, [vp, _u16p, u32, _f32p]),
            "ekws_head_train_epoch": (st, [vp, _f32p]),
            "ekws_head_logits_f32": (st, [vp, u32, _f32p]),
            "ekws_head_folded": (st, [vp, _f32p, _f32p]),
            "ekws_head_blob_size": (sz, [u32, u32, st]),
            "ekws_head_quantize": (st, [vp, vp, sz, st, ctypes.POINTER(sz)]),
            "ekws_head_check": (ctypes.c_char_p, [vp, sz]),
            "ekws_head_load": (st, [vp, vp, sz]),
            "ekws_head_invoke_s8": (st, [vp, _i8p, sz, _i8p, sz, vp]),
            "ekws_head_invoke_f32": (st, [vp, _i8p, sz, _f32p, sz]),
            "ekws_head_expf": (ctypes.c_float, [ctypes.c_float]),
            "ekws_head_self_train_pick": (st, [_i8p, u32, u32, ctypes.c_float, u32, _f32p,
                                                ctypes.POINTER(u32), ctypes.POINTER(u32)]),
            "ekws_head_quantize_multiplier": (st, [ctypes.c_float, ctypes.POINTER(ctypes.c_int32),
                                                   ctypes.POINTER(ctypes.c_int32)]),
        }
        for name, (res, args) in protos.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        _configured.add(id(lib))
    return lib


def _check(lib, st: int, what: str) -> None:
    if st != 0:
        raise EdgekwsError(f"{what} failed in the C head trainer: {lib.ekws_status_str(st).decode()}")


def _aligned(nbytes: int):
    return (ctypes.c_uint32 * max((nbytes + 3) // 4, 1))()


class CHeadTrainer:
    """ekws_head_trainer_t in a workspace owned by this object."""

    def __init__(self, config: HeadConfig, emb_scale: float, emb_zp: int):
        config.check()
        self.lib = lib = library()
        self.cfg = config
        self._c = _Config(config.num_classes, config.embed_size, config.max_examples, config.batch,
                          config.seed & 0xFFFFFFFF, config.lr, config.momentum, config.weight_decay,
                          config.imprint_scale)
        self.workspace_bytes = int(lib.ekws_head_workspace_size(config.num_classes, config.embed_size,
                                                                config.max_examples))
        self._ws = _aligned(self.workspace_bytes)
        self._tr = ctypes.create_string_buffer(int(lib.ekws_head_trainer_struct_size()))
        _check(lib, lib.ekws_head_trainer_init(self._tr, ctypes.byref(self._c), self._ws, self.workspace_bytes,
                                               float(emb_scale), int(emb_zp)), "ekws_head_trainer_init")
        self._view = _Trainer.from_buffer(self._tr)

    @property
    def num_examples(self) -> int:
        return int(self._view.num_examples)

    @property
    def weight(self) -> np.ndarray:
        c, e = self.cfg.num_classes, self.cfg.embed_size
        return np.ctypeslib.as_array(self._view.weight, (c, e)).copy()

    @property
    def bias(self) -> np.ndarray:
        return np.ctypeslib.as_array(self._view.bias, (self.cfg.num_classes,)).copy()

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (C, E), bias (C,)) in the embedding's space (ekws_head_folded)."""
        w = np.zeros((self.cfg.num_classes, self.cfg.embed_size), np.float32)
        b = np.zeros(self.cfg.num_classes, np.float32)
        _check(self.lib, self.lib.ekws_head_folded(self._tr, w.ctypes.data_as(_f32p), b.ctypes.data_as(_f32p)),
               "ekws_head_folded")
        return w, b

    def add(self, embeddings: np.ndarray, labels) -> None:
        q, labels = check_examples(self.cfg, self.num_examples, embeddings, labels)   # all or nothing, as numpy
        for row, y in zip(q, labels):
            _check(self.lib, self.lib.ekws_head_add_example(self._tr, row.ctypes.data_as(_i8p), row.size, int(y)),
                   "ekws_head_add_example")

    def set_weights(self, weight: np.ndarray, bias: np.ndarray) -> None:
        w, b = check_rows(self.cfg, weight, bias)   # C copies C x E and C floats: never read past them
        _check(self.lib, self.lib.ekws_head_set_weights(self._tr, w.ctypes.data_as(_f32p), b.ctypes.data_as(_f32p)),
               "ekws_head_set_weights")

    def imprint(self) -> None:
        _check(self.lib, self.lib.ekws_head_imprint(self._tr), "ekws_head_imprint")

    def standardize(self) -> None:
        _check(self.lib, self.lib.ekws_head_standardize(self._tr), "ekws_head_standardize")

    def _run(self, fn, order, what: str) -> float:
        order = check_order(order, self.num_examples, what.split("_")[-1], empty=what == "ekws_head_gradient")
        o = np.ascontiguousarray(order, np.uint16)   # < 65536: the store holds no more
        loss = ctypes.c_float()
        _check(self.lib, fn(self._tr, o.ctypes.data_as(_u16p), len(o), ctypes.byref(loss)), what)
        return float(loss.value)

    def gradient(self, order) -> float:
        return self._run(self.lib.ekws_head_gradient, order, "ekws_head_gradient")

    def grads(self) -> tuple[np.ndarray, np.ndarray]:
        """(grad_w (C, E), grad_b (C,)) after gradient()."""
        c, e = self.cfg.num_classes, self.cfg.embed_size
        base = ctypes.addressof(self._ws)
        gw = np.frombuffer((ctypes.c_float * (c * e)).from_address(base + 8 * c * e), np.float32).reshape(c, e)
        gb = np.frombuffer((ctypes.c_float * c).from_address(base + 4 * (3 * c * e + 2 * c)), np.float32)
        return gw.copy(), gb.copy()

    def step(self, order) -> float:
        return self._run(self.lib.ekws_head_step, order, "ekws_head_step")

    def train_epoch(self) -> float:
        loss = ctypes.c_float()
        _check(self.lib, self.lib.ekws_head_train_epoch(self._tr, ctypes.byref(loss)), "ekws_head_train_epoch")
        return float(loss.value)

    def logits(self) -> np.ndarray:
        out = np.zeros((self.num_examples, self.cfg.num_classes), np.float32)
        for i in range(self.num_examples):
            _check(self.lib, self.lib.ekws_head_logits_f32(self._tr, i, out[i].ctypes.data_as(_f32p)),
                   "ekws_head_logits_f32")
        return out

    def quantize_blob(self, with_float: bool = True) -> bytes:
        cap = int(self.lib.ekws_head_blob_size(self.cfg.num_classes, self.cfg.embed_size, int(with_float)))
        buf = _aligned(cap)
        size = ctypes.c_size_t()
        _check(self.lib, self.lib.ekws_head_quantize(self._tr, buf, cap, int(with_float), ctypes.byref(size)),
               "ekws_head_quantize")
        return bytes(bytearray(buf)[:size.value])

    def quantize(self) -> QHead:
        return QHead.from_blob(self.quantize_blob(True), "C head blob")


class CHead:
    """A head blob loaded by ekws_head_load (what the device does at boot)."""

    def __init__(self):
        self.lib = library()
        self._h = ctypes.create_string_buffer(int(self.lib.ekws_head_struct_size()))
        self._blob = None
        self.num_classes = self.embed_size = 0

    def load(self, blob: bytes) -> str | None:
        """Bind `blob`; returns None, or the reason it was rejected (the previous head stays)."""
        buf = _aligned(len(blob))
        ctypes.memmove(buf, blob, len(blob))
        why = self.lib.ekws_head_check(buf, len(blob))
        if self.lib.ekws_head_load(self._h, buf, len(blob)) != 0:
            return why.decode() if why else "rejected"
        self._blob = buf
        self.num_classes, self.embed_size = (int(v) for v in np.frombuffer(blob[16:24], "<u4"))
        return None

    def logits_int8(self, embeddings: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(embeddings, np.int8)
        out = np.zeros((len(q), self.num_classes), np.int8)
        scratch = _aligned(2 * max(self.embed_size, 1))
        for i in range(len(q)):
            _check(self.lib, self.lib.ekws_head_invoke_s8(self._h, q[i].ctypes.data_as(_i8p), q.shape[1],
                                                          out[i].ctypes.data_as(_i8p), self.num_classes, scratch),
                   "ekws_head_invoke_s8")
        return out

    def logits_f32(self, embeddings: np.ndarray) -> np.ndarray:
        q = np.ascontiguousarray(embeddings, np.int8)
        out = np.zeros((len(q), self.num_classes), np.float32)
        for i in range(len(q)):
            _check(self.lib, self.lib.ekws_head_invoke_f32(self._h, q[i].ctypes.data_as(_i8p), q.shape[1],
                                                           out[i].ctypes.data_as(_f32p), self.num_classes),
                   "ekws_head_invoke_f32")
        return out


def blob_bytes(num_classes: int, embed_size: int, with_float: bool) -> int:
    return blob_size(num_classes, embed_size, with_float)


def self_train_pick(logits: np.ndarray, scale: float, fraction_ppm: int) -> np.ndarray:
    """ekws_head_self_train_pick: the indices (int64, ascending) of the clips self-training keeps, from
    int8 head logits (N, C) and the fraction in parts per million; core.self_train_pick gives the same."""
    lib = library()
    q = np.ascontiguousarray(logits, dtype=np.int8)
    if q.ndim != 2:
        raise EdgekwsError(f"self-training: int8 logits (N, C) needed, got shape {q.shape}")
    n = len(q)
    work = np.zeros(max(n, 1), np.float32)
    idx = np.zeros(max(n, 1), np.uint32)
    count = ctypes.c_uint32(0)
    if not 0 <= fraction_ppm < 2 ** 32:   # the C type; the function itself refuses what is outside 1..10^6
        raise EdgekwsError(f"self-training: fraction {fraction_ppm} ppm is not a uint32")
    _check(lib, lib.ekws_head_self_train_pick(q.ctypes.data_as(_i8p), n, q.shape[1], float(scale), int(fraction_ppm),
                                              work.ctypes.data_as(_f32p),
                                              idx.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
                                              ctypes.byref(count)), "self-training's choice")
    return idx[:count.value].astype(np.int64)
