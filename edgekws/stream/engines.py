"""The three ways to run the int8 model on feature windows: numpy (the integer reference), onnx
(onnxruntime on model.int8.onnx) and c (the firmware's host library through ctypes). All give the
same int8 logits, bit for bit, so the detections downstream are identical too.
"""

from __future__ import annotations

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.quant.qmodel import check_example_shape

ENGINES = ("numpy", "onnx", "c")


class ModelEngine:
    """logits(windows (N, T, F) int8) -> (N, K) int8; with a voice_offset (E,) the embedding moves by
    it before the classifier (edgekws/voicenorm.py, ekws_model_invoke_voice)."""

    name = "?"

    def __init__(self, qm, voice_offset=None):
        self.qm = qm
        self.voice_offset = None if voice_offset is None else np.asarray(voice_offset, np.int32)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NumpyEngine(ModelEngine):
    name = "numpy"

    def logits(self, windows):
        if self.voice_offset is not None:
            from edgekws.voicenorm import int8_voice_logits

            return int8_voice_logits(self.qm, windows, self.voice_offset)
        from edgekws.quant import int8_forward

        return int8_forward(self.qm, windows)


class OnnxEngine(ModelEngine):
    name = "onnx"

    def __init__(self, qm, bundle=None, voice_offset=None):
        super().__init__(qm, voice_offset)
        from edgekws.export.onnx import int8_onnx, session

        if bundle is not None and bundle.has("model.int8.onnx") and voice_offset is None:
            data = bundle.read_bytes("model.int8.onnx")
        else:  # not exported yet, or with the voice offset in the graph: built in memory
            labels = bundle.labels if bundle is not None else [str(i) for i in range(qm.num_classes)]
            fc = bundle.manifest["feature_config"] if bundle is not None else {}
            data = int8_onnx(qm, labels, fc, voice_offset=self.voice_offset).SerializeToString()
        self.sess = session(data)

    def logits(self, windows):
        from edgekws.export.onnx import run

        check_example_shape(windows, self.qm.input_shape, "onnx engine")   # numpy's check: not only the size
        return np.asarray(run(self.sess, windows), np.int8).reshape(len(windows), self.qm.num_classes)


class CEngine(ModelEngine):
    name = "c"

    def __init__(self, qm, voice_offset=None):
        super().__init__(qm, voice_offset)
        from edgekws.export.c import model_blob
        from edgekws.export.cruntime import CModel

        self.blob = model_blob(qm)
        self.cmodel = CModel(self.blob)

    def logits(self, windows):
        check_example_shape(windows, self.qm.input_shape, "c engine")
        if self.voice_offset is not None:
            offs = np.broadcast_to(self.voice_offset, (len(windows), len(self.voice_offset)))
            return self.cmodel.logits_voice_int8(windows, np.ascontiguousarray(offs))
        return self.cmodel.logits_int8(windows)


def make_engine(name, qm, bundle=None, voice_offset=None) -> ModelEngine:
    """An engine by name (with the embedding moved by `voice_offset` when given), or `name` itself if it
    already is a ModelEngine (tests pass their own)."""
    if isinstance(name, ModelEngine):
        return name
    if name == "numpy":
        return NumpyEngine(qm, voice_offset)
    if name == "onnx":
        return OnnxEngine(qm, bundle, voice_offset)
    if name == "c":
        return CEngine(qm, voice_offset)
    raise EdgekwsError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
