#!/usr/bin/env python3
"""Frontend benchmark: prints a table (not a test; figures go to BENCHMARKS.md).

    python tools/bench_frontend.py [--clips 200] [--repeats 5]

Rows: the integer numpy batch path; float mel spectrograms of the same shape (numpy.fft, scipy.fft,
librosa if installed), measured in the same run; the numpy streaming path per 20 ms hop; the C
frontend per hop through ctypes (whole-buffer pushes, so call overhead is amortized).
Throughput is seconds of audio per second of process CPU time (best of --repeats).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekws.features import FeatureConfig, StreamingFrontend, compute_features  # noqa: E402
from edgekws.features import signals  # noqa: E402
from edgekws.features.config import hann_float, mel_weights_float  # noqa: E402
from edgekws.features.reference import reference_db  # noqa: E402


def best_cpu(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def scipy_mel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    import scipy.fft

    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), cfg.window_len, axis=1)[:, :: cfg.hop_len]
    spec = scipy.fft.rfft(frames * hann_float(cfg.window_len).astype(np.float32), n=cfg.fft_size, axis=-1)
    power = spec.real**2 + spec.imag**2
    return np.log(power @ mel_weights_float(cfg).astype(np.float32) + 1e-6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200, help="1-second clips per batch (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    cfg = FeatureConfig()
    rng = np.random.default_rng(0)
    x = np.stack([signals.speech_like(rng, 1.0, -6.0 - 3 * (i % 10)) for i in range(args.clips)])
    secs = x.shape[0] * x.shape[1] / cfg.sample_rate
    rows = []

    def add(name, cpu, unit="batch"):
        rows.append((name, cpu, unit))

    add("integer numpy (compute_features)", best_cpu(lambda: compute_features(x, cfg), args.repeats))
    add("float numpy.fft mel (reference_db)", best_cpu(lambda: reference_db(x, cfg), args.repeats))
    add("float32 scipy.fft mel", best_cpu(lambda: scipy_mel(x, cfg), args.repeats))
    try:
        import librosa

        add("librosa melspectrogram", best_cpu(lambda: [librosa.feature.melspectrogram(
            y=c.astype(np.float32), sr=16000, n_fft=512, win_length=480, hop_length=320, n_mels=40,
            fmin=125, fmax=7500, center=False) for c in x], args.repeats))
    except ImportError:
        pass

    stream_audio = np.concatenate(list(x[:20]))
    hops = stream_audio.size // cfg.hop_len

    def stream_numpy():
        fe = StreamingFrontend(cfg)
        for i in range(hops):
            fe.push(stream_audio[i * cfg.hop_len : (i + 1) * cfg.hop_len])

    per_hop_numpy = best_cpu(stream_numpy, 3) / hops
    c_row = None
    try:
        from edgekws.features.cfrontend import CFrontend

        long_audio = np.tile(stream_audio, 3)
        cfe = CFrontend(cfg)

        def run_c():
            cfe.reset()
            cfe.push(long_audio)

        c_row = best_cpu(run_c, args.repeats) / (long_audio.size // cfg.hop_len)
    except Exception as exc:  # noqa: BLE001 - the bench reports what it could not measure
        print(f"C frontend not measured: {exc}", file=sys.stderr)

    print(f"# frontend benchmark: {args.clips} x 1 s speech-like clips, 49 x 40 features each")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"| {'path':<36} | {'CPU s / batch':>13} | {'s audio / s CPU':>15} |")
    print(f"|{'-' * 38}|{'-' * 15}|{'-' * 17}|")
    for name, cpu, _ in rows:
        print(f"| {name:<36} | {cpu:13.4f} | {secs / cpu:15.0f} |")
    hop_ms = cfg.hop_ms
    print()
    print(f"| {'streaming, per 20 ms hop':<36} | {'CPU us / hop':>13} | {'% of real time':>15} |")
    print(f"|{'-' * 38}|{'-' * 15}|{'-' * 17}|")
    print(f"| {'numpy StreamingFrontend.push':<36} | {per_hop_numpy * 1e6:13.1f} | {per_hop_numpy * 1e3 / hop_ms * 100:15.3f} |")
    if c_row is not None:
        print(f"| {'C ekws_frontend_push (host, -O2)':<36} | {c_row * 1e6:13.2f} | {c_row * 1e3 / hop_ms * 100:15.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
