"""Streaming keyword detection: `edgekws listen` and `edgekws eval-stream`.

    detector.py    integer detector (posteriors, smoothing, thresholds, refractory), twin of detector.c
    pipeline.py    frontend -> ring of frames -> model every N hops -> detector (batch and live)
    engines.py     the int8 model in numpy, onnxruntime or the C library
    cpipeline.py   firmware/src/pipeline.c through ctypes (the "c" engine)
    evalstream.py  long test streams, hit rate / false accepts per hour / latency, threshold tuning
    cli.py         the two commands

The detector settings live in the bundle (manifest["stream"], see StreamConfig).
"""

from edgekws.stream.cli import register
from edgekws.stream.detector import Detector, StreamConfig, detect_steps, exp_lut
from edgekws.stream.pipeline import Detection, StreamingDetector, StreamSetup, detect_audio

__all__ = ["Detection", "Detector", "StreamConfig", "StreamSetup", "StreamingDetector", "detect_audio",
           "detect_steps", "exp_lut", "register"]
