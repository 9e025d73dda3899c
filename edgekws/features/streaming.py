"""StreamingFrontend: push any number of int16 samples, receive the frames they complete.

Produces exactly the frames of compute_features() on the concatenated audio, whatever the chunking.
"""

from __future__ import annotations

import numpy as np

from edgekws.errors import AudioError
from edgekws.features.config import FeatureConfig
from edgekws.features.integer import features_from_frames, preemphasize


class StreamingFrontend:
    """Stateful integer frontend for one audio stream (numpy twin of ekws_frontend_t)."""

    def __init__(self, cfg: FeatureConfig | None = None):
        self.cfg = cfg or FeatureConfig()
        self.reset()

    def reset(self) -> None:
        """Forget buffered samples and the pre-emphasis history (a new stream starts)."""
        self._pending = np.zeros(0, dtype=np.int16)  # pre-emphasized samples not yet fully used
        self._prev = 0  # last raw sample, for pre-emphasis

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append samples; return the completed frames.

        samples : (n,) int16, any n >= 0
        returns (k, num_bands) int8, k >= 0
        """
        s = np.asarray(samples)
        if s.dtype != np.int16 or s.ndim != 1:
            raise AudioError(f"StreamingFrontend.push: expected (n,) int16 samples, got {s.dtype} {s.shape}")
        cfg = self.cfg
        if s.size:
            y = preemphasize(s[None], cfg.tables.preemph_q15, self._prev)[0]
            self._prev = int(s[-1])
            self._pending = np.concatenate([self._pending, y])
        k = cfg.num_frames(self._pending.size)
        if k == 0:
            return np.zeros((0, cfg.num_bands), dtype=np.int8)
        win = np.lib.stride_tricks.sliding_window_view(self._pending, cfg.window_len)[:: cfg.hop_len][:k]
        out = features_from_frames(win, cfg)
        self._pending = self._pending[k * cfg.hop_len :].copy()
        return out
