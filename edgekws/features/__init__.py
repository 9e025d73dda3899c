"""Integer FFT framing frontend: int16 PCM -> int8 mel log-energy features, identical in numpy and C.

    from edgekws.features import FeatureConfig, compute_features, StreamingFrontend

The definition (fixed-point formats, scaling, the int8 mapping) is documented in
edgekws/features/integer.py; the C twin is firmware/src/frontend.c.
"""

from edgekws.features.config import FeatureConfig, FeatureConfigError, FrontendTables
from edgekws.features.integer import compute_features
from edgekws.features.reference import db_from_int8, reference_db, reference_int8
from edgekws.features.streaming import StreamingFrontend
from edgekws.features.cli import register

__all__ = [
    "FeatureConfig",
    "FeatureConfigError",
    "FrontendTables",
    "StreamingFrontend",
    "compute_features",
    "db_from_int8",
    "reference_db",
    "reference_int8",
    "register",
]
