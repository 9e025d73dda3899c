"""Float reference of the frontend (numpy.fft): what the integer pipeline approximates.

Used only to document and test the integer path's error; never by training or the device.
"""

from __future__ import annotations

import numpy as np

from edgekws.features.config import FeatureConfig, hann_float, mel_weights_float


def reference_db(audio: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Band energies in dB, 10 log10(sum_k w_k |X_k / N|^2), in float64.

    audio : (N, S) or (S,) int16 (or float in int16 units)
    returns (N, T, F) or (T, F) float64; -inf for an all-zero frame
    """
    cfg = cfg or FeatureConfig()
    x = np.asarray(audio, dtype=np.float64)
    single = x.ndim == 1
    x = x[None] if single else x
    if cfg.preemphasis:
        x = np.concatenate([x[:, :1], x[:, 1:] - cfg.preemphasis * x[:, :-1]], axis=1) / 2.0
    T = cfg.num_frames(x.shape[1])
    frames = np.lib.stride_tricks.sliding_window_view(x, cfg.window_len, axis=1)[:, :: cfg.hop_len][:, :T]
    spec = np.fft.rfft(frames * hann_float(cfg.window_len), n=cfg.fft_size, axis=-1) / cfg.fft_size
    power = spec.real**2 + spec.imag**2
    with np.errstate(divide="ignore"):
        db = 10.0 * np.log10(power @ mel_weights_float(cfg))
    return db[0] if single else db


def reference_int8(audio: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """reference_db mapped to int8 with the config's scale and zero point (same shape, int8)."""
    cfg = cfg or FeatureConfig()
    db = reference_db(audio, cfg)
    q = np.round((db - cfg.db_min) / cfg.input_scale) - 128
    return np.clip(np.nan_to_num(q, neginf=-128), -128, 127).astype(np.int8)


def db_from_int8(q: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Dequantize int8 features to dB: db_min + scale * (q + 128). (...) int8 -> float64."""
    cfg = cfg or FeatureConfig()
    return cfg.db_min + cfg.input_scale * (np.asarray(q, dtype=np.float64) - cfg.input_zero_point)
