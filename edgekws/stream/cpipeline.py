"""CPipeline: firmware/src/pipeline.c (frontend -> ring -> model -> detector, all in C) through
ctypes, with StreamingDetector's push API. This is the `--engine c` of edgekws listen."""

from __future__ import annotations

import ctypes as C

import numpy as np

from edgekws.errors import EdgekwsError


class _Detection(C.Structure):
    _fields_ = [("label", C.c_int32), ("score_q15", C.c_int32), ("frame", C.c_uint32)]


class _DetectorConfig(C.Structure):
    _fields_ = [("num_classes", C.c_uint32), ("smooth", C.c_uint32), ("refractory", C.c_uint32),
                ("exp_lut", C.POINTER(C.c_uint16)), ("threshold", C.POINTER(C.c_int32))]


def _bind(lib):
    if getattr(lib, "_ekws_pipeline_bound", False):
        return lib
    lib.ekws_pipeline_state_size.restype = C.c_size_t
    lib.ekws_pipeline_init.restype = C.c_int
    lib.ekws_pipeline_init.argtypes = [C.c_void_p, C.c_void_p, C.c_void_p, C.POINTER(_DetectorConfig), C.c_uint32]
    lib.ekws_pipeline_reset.restype = None
    lib.ekws_pipeline_reset.argtypes = [C.c_void_p]
    lib.ekws_pipeline_max_detections.restype = C.c_size_t
    lib.ekws_pipeline_max_detections.argtypes = [C.c_void_p, C.c_size_t]
    lib.ekws_pipeline_set_voice_shift.restype = C.c_int
    lib.ekws_pipeline_set_voice_shift.argtypes = [C.c_void_p, C.c_int32]
    lib.ekws_pipeline_set_voice_offset.restype = C.c_int
    lib.ekws_pipeline_set_voice_offset.argtypes = [C.c_void_p, C.POINTER(C.c_int32), C.c_size_t]
    lib.ekws_pipeline_push.restype = C.c_int
    lib.ekws_pipeline_push.argtypes = [C.c_void_p, C.c_void_p, C.c_size_t, C.POINTER(_Detection), C.c_size_t,
                                       C.POINTER(C.c_size_t)]
    lib._ekws_pipeline_bound = True
    return lib


class CPipeline:
    """The C streaming chain for one stream (owns its model, frontend and detector memory)."""

    def __init__(self, setup):
        from edgekws.export.c import model_blob
        from edgekws.export.cruntime import CModel
        from edgekws.features.cfrontend import CFrontend

        from edgekws.stream.detector import check_c_classes

        check_c_classes(len(setup.thresholds), "use --engine numpy or onnx")
        self.setup = setup
        self.cmodel = CModel(model_blob(setup.qm))        # keeps blob + arena alive
        self.lib = _bind(self.cmodel.lib)
        self.frontend = CFrontend(setup.feature_config, self.lib)  # owns the frontend params/tables
        c = setup.config
        self._lut = np.ascontiguousarray(setup.lut, np.uint16)
        self._thr = np.ascontiguousarray(setup.thresholds, np.int32)
        self._cfg = _DetectorConfig(len(self._thr), c.smooth, c.refractory,
                                    self._lut.ctypes.data_as(C.POINTER(C.c_uint16)),
                                    self._thr.ctypes.data_as(C.POINTER(C.c_int32)))
        self._state = C.create_string_buffer(int(self.lib.ekws_pipeline_state_size()))
        st = self.lib.ekws_pipeline_init(self._state, C.addressof(self.frontend._params),
                                         C.addressof(self.cmodel._model), C.byref(self._cfg), c.hop_every)
        if st != 0:
            raise EdgekwsError(f"ekws_pipeline_init failed: {self.lib.ekws_status_str(st).decode()}")
        st = self.lib.ekws_pipeline_set_voice_shift(self._state, int(c.voice_shift))
        if st != 0:
            raise EdgekwsError(f"ekws_pipeline_set_voice_shift({c.voice_shift}) failed (the bundle's 'stream' "
                               f"setting voice_shift): {self.lib.ekws_status_str(st).decode()}")
        self._offset = None
        if c.voice_offset is not None:
            self._offset = np.ascontiguousarray(c.voice_offset, np.int32)   # read at every step: kept alive here
            st = self.lib.ekws_pipeline_set_voice_offset(self._state, self._offset.ctypes.data_as(C.POINTER(C.c_int32)),
                                                         self._offset.size)
            if st != 0:
                raise EdgekwsError(f"ekws_pipeline_set_voice_offset ({self._offset.size} values) failed (the bundle's "
                                   f"'stream' setting voice_offset): {self.lib.ekws_status_str(st).decode()}")

    def reset(self) -> None:
        self.lib.ekws_pipeline_reset(self._state)

    def push(self, samples: np.ndarray):
        s = np.ascontiguousarray(samples, np.int16)
        cap = int(self.lib.ekws_pipeline_max_detections(self._state, s.size))
        out = (_Detection * max(cap, 1))()
        got = C.c_size_t(0)
        st = self.lib.ekws_pipeline_push(self._state, s.ctypes.data, s.size, out, cap, C.byref(got))
        if st != 0:
            raise EdgekwsError(f"ekws_pipeline_push failed: {self.lib.ekws_status_str(st).decode()}")
        return [self.setup.detection(out[i].label, out[i].score_q15, out[i].frame) for i in range(got.value)]
