#!/usr/bin/env python3
"""Frontend benchmark: prints a table (not a test; figures go to BENCHMARKS.md).

    python tools/bench_frontend.py [--clips 200] [--repeats 5]

Rows: the integer numpy batch path; float mel spectrograms of the same shape (numpy.fft, scipy.fft,
librosa if installed), measured in the same run; the numpy streaming path per 20 ms hop; the C
frontend per hop through ctypes (whole-buffer pushes, so call overhead is amortized); the C frontend's
instructions per hop on a Cortex-M4 under QEMU (tools/qemu_count.py) when the ARM toolchain is installed.
Throughput is seconds of audio per second of process CPU time, median of --repeats rounds in which
the batch paths alternate (the machine may be shared: alternating keeps the comparison fair).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgekws.cliargs import positive_int  # noqa: E402

from edgekws.features import FeatureConfig, StreamingFrontend, compute_features  # noqa: E402
from edgekws.features import signals  # noqa: E402
from edgekws.features.config import hann_float, mel_weights_float  # noqa: E402
from edgekws.features.reference import reference_db  # noqa: E402


def cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def best_cpu(fn, repeats: int) -> float:
    fn()  # warm-up
    return min(cpu_time(fn) for _ in range(repeats))


def interleaved_cpu(fns: dict, repeats: int) -> dict:
    """CPU seconds of each fn over `repeats` rounds, the fns alternating within each round
    (A B C A B C ...), so a noisy neighbour slows all paths alike: {name: [seconds per round]}."""
    for fn in fns.values():
        fn()  # warm-up (plans, workspaces, library load)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(cpu_time(fn))
    return times


def scipy_mel(x: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    import scipy.fft

    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), cfg.window_len, axis=1)[:, :: cfg.hop_len]
    spec = scipy.fft.rfft(frames * hann_float(cfg.window_len).astype(np.float32), n=cfg.fft_size, axis=-1)
    power = spec.real**2 + spec.imag**2
    return np.log(power @ mel_weights_float(cfg).astype(np.float32) + 1e-6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=positive_int, default=200, help="1-second clips per batch (default %(default)s)")
    ap.add_argument("--repeats", type=positive_int, default=5)
    ap.add_argument("--no-qemu", action="store_true", help="skip the Cortex-M4 instruction count (tools/qemu_count.py)")
    args = ap.parse_args(argv)
    cfg = FeatureConfig()
    rng = np.random.default_rng(0)
    x = np.stack([signals.speech_like(rng, 1.0, -6.0 - 3 * (i % 10)) for i in range(args.clips)])
    secs = x.shape[0] * x.shape[1] / cfg.sample_rate
    paths = {
        "integer numpy (compute_features)": lambda: compute_features(x, cfg),
        "float numpy.fft mel (reference_db)": lambda: reference_db(x, cfg),
        "float32 scipy.fft mel": lambda: scipy_mel(x, cfg),
    }
    try:
        import librosa

        paths["librosa melspectrogram"] = lambda: [librosa.feature.melspectrogram(
            y=c.astype(np.float32), sr=16000, n_fft=512, win_length=480, hop_length=320, n_mels=40,
            fmin=125, fmax=7500, center=False) for c in x]
    except ImportError:
        pass
    times = interleaved_cpu(paths, args.repeats)
    ratio = [a / b for a, b in zip(times["integer numpy (compute_features)"], times["float numpy.fft mel (reference_db)"])]

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

    print(f"# frontend benchmark: {args.clips} x 1 s speech-like clips, 49 x 40 features each; "
          f"{args.repeats} interleaved rounds, process CPU time")
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    print(f"| {'path':<36} | {'CPU s, median':>13} | {'CPU s, best':>11} | {'s audio / s CPU':>15} |")
    print(f"|{'-' * 38}|{'-' * 15}|{'-' * 13}|{'-' * 17}|")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"| {name:<36} | {med:13.4f} | {min(t):11.4f} | {secs / med:15.0f} |")
    print(f"integer / float reference CPU time, median of {len(ratio)} adjacent pairs: {statistics.median(ratio):.2f}")
    hop_ms = cfg.hop_ms
    print()
    print(f"| {'streaming, per 20 ms hop':<36} | {'CPU us / hop':>13} | {'% of real time':>15} |")
    print(f"|{'-' * 38}|{'-' * 15}|{'-' * 17}|")
    print(f"| {'numpy StreamingFrontend.push':<36} | {per_hop_numpy * 1e6:13.1f} | {per_hop_numpy * 1e3 / hop_ms * 100:15.3f} |")
    if c_row is not None:
        print(f"| {'C ekws_frontend_push (host, -O2)':<36} | {c_row * 1e6:13.2f} | {c_row * 1e3 / hop_ms * 100:15.4f} |")
    if not args.no_qemu:
        print()
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import qemu_count

        try:
            qemu_count.require_tools()
        except qemu_count.ToolMissing as exc:
            print(f"(Cortex-M4 instructions per hop not measured: missing {exc})")
        else:
            qemu_count.main(["--hops", "50"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
