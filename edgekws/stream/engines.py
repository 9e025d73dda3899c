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
    """logits(windows (N, T, F) int8) -> (N, K) int8."""

    name = "?"

    def __init__(self, qm):
        self.qm = qm

    def logits(self, windows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class NumpyEngine(ModelEngine):
    name = "numpy"

    def logits(self, windows):
        from edgekws.quant import int8_forward

        return int8_forward(self.qm, windows)


class OnnxEngine(ModelEngine):
    name = "onnx"

    def __init__(self, qm, bundle=None):
        super().__init__(qm)
        from edgekws.export.onnx import int8_onnx, session

        if bundle is not None and bundle.has("model.int8.onnx"):
            data = bundle.read_bytes("model.int8.onnx")
        else:  # not exported yet: build the same graph in memory
            labels = bundle.labels if bundle is not None else [str(i) for i in range(qm.num_classes)]
            fc = bundle.manifest["feature_config"] if bundle is not None else {}
            data = int8_onnx(qm, labels, fc).SerializeToString()
        self.sess = session(data)

    def logits(self, windows):
        from edgekws.export.onnx import run

        check_example_shape(windows, self.qm.input_shape, "onnx engine")   # numpy's check: not only the size
        return np.asarray(run(self.sess, windows), np.int8).reshape(len(windows), self.qm.num_classes)


class CEngine(ModelEngine):
    name = "c"

    def __init__(self, qm):
        super().__init__(qm)
        from edgekws.export.c import model_blob
        from edgekws.export.cruntime import CModel

        self.blob = model_blob(qm)
        self.cmodel = CModel(self.blob)

    def logits(self, windows):
        check_example_shape(windows, self.qm.input_shape, "c engine")
        return self.cmodel.logits_int8(windows)


def make_engine(name, qm, bundle=None) -> ModelEngine:
    """An engine by name, or `name` itself if it already is a ModelEngine (tests pass their own)."""
    if isinstance(name, ModelEngine):
        return name
    if name == "numpy":
        return NumpyEngine(qm)
    if name == "onnx":
        return OnnxEngine(qm, bundle)
    if name == "c":
        return CEngine(qm)
    raise EdgekwsError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
