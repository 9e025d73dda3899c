"""edgekws: spoken commands on small devices.

Integer features shared bit for bit by numpy and C, a five-layer int8 network trained by a
numpy backpropagation engine, ONNX and C99 firmware, and on-device last-layer retraining.
"""

__version__ = "0.1.0"

from edgekws.errors import EdgekwsError  # noqa: E402,F401
