"""Shared by the retraining tests: a quantized random-backbone bundle and a tiny tone dataset."""

import numpy as np

from edgekws.audio import write_wav
from edgekws.quant import quantize_bundle

from quant_helpers import features, make_bundle


def tone_dataset(root, words=("alpha", "beta", "gamma"), speakers=6, takes=2, unknown=("zeta",), seed=0):
    """DATA/<word>/<speaker>_nohash_<n>.wav: each word a chord of its own frequencies, each speaker a
    slightly different pitch and loudness; plus quiet background noise. Deterministic."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(sr) / sr
    base = {w: 300.0 * (1.6 ** i) for i, w in enumerate((*words, *unknown))}
    for w, f0 in base.items():
        (root / w).mkdir(parents=True, exist_ok=True)
        for s in range(speakers):
            for k in range(takes):
                f = f0 * (1 + 0.03 * rng.standard_normal())
                env = np.clip(np.sin(np.pi * np.clip((t - 0.2) / 0.6, 0, 1)), 0, None)
                x = env * (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 2.5 * f * t))
                x = x * rng.uniform(0.2, 0.6) + 0.01 * rng.standard_normal(sr)
                write_wav(root / w / f"spk{s:02d}_nohash_{k}.wav", x.astype(np.float32), sr)
    (root / "_background_noise_").mkdir(exist_ok=True)
    write_wav(root / "_background_noise_" / "noise.wav", (0.05 * rng.standard_normal(3 * sr)).astype(np.float32), sr)
    return root


def quantized_bundle(path, arch="dscnn-s", n_classes=5, seed=0):
    """A random-weight bundle, quantized on random features (a frozen backbone for tests)."""
    b, model = make_bundle(path, arch, n_classes, seed)
    quantize_bundle(b, features(64, seed + 3), log=lambda *a: None)
    return b
