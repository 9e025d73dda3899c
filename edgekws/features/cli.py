"""`edgekws features WAV...`: compute integer features of WAV files and print shape and statistics."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="compute int8 features of WAV files and print their shape and statistics",
        description="Compute the integer frontend's int8 features of each WAV file (resampled to the "
        "frontend's sample rate) and print shape, range and the dB range they represent.",
    )
    p.add_argument("wav", nargs="+", help="WAV file(s)")
    p.add_argument("--preemphasis", type=float, default=0.0, help="pre-emphasis coefficient (default 0 = off)")
    p.add_argument("--save", metavar="NPY", help="save the features of a single WAV as .npy (T, F) int8")
    p.add_argument("--force", action="store_true", help="replace an existing --save file")
    p.set_defaults(func=run)


def run(args) -> int:
    import io

    import numpy as np

    from edgekws.audio import read_wav
    from edgekws.errors import EdgekwsError
    from edgekws.features.config import FeatureConfig
    from edgekws.features.integer import compute_features
    from edgekws.features.reference import db_from_int8
    from edgekws.fileio import atomic_write_bytes, check_output_file

    cfg = FeatureConfig(preemphasis=args.preemphasis)
    if args.save and len(args.wav) != 1:
        raise EdgekwsError("--save needs exactly one WAV file")
    if args.save:
        check_output_file(args.save, "--save", ((args.wav[0], "WAV"),))
        from pathlib import Path

        if Path(args.save).exists() and not args.force:
            raise EdgekwsError(f"--save {args.save}: exists; pass --force to replace it")
    print(f"config {cfg.config_hash()}: {cfg.window_ms:g} ms window, {cfg.hop_ms:g} ms hop, "
          f"{cfg.num_bands} bands, int8 step {cfg.input_scale:.3f} dB from {cfg.db_min:g} dB")
    for path in args.wav:
        x = read_wav(path, sr=cfg.sample_rate, dtype="int16")
        f = compute_features(x, cfg)
        if f.size:
            db = db_from_int8(f, cfg)
            sat = float(np.mean(f == 127)) * 100
            print(f"{path}: {f.shape[0]} frames x {f.shape[1]} bands, int8 min {f.min()} max {f.max()} "
                  f"mean {f.mean():.1f}, {db.min():.1f}..{db.max():.1f} dB, {sat:.2f}% saturated")
        else:
            print(f"{path}: shorter than one window ({x.size} samples), no frames")
        if args.save:
            buf = io.BytesIO()
            np.save(buf, f)
            atomic_write_bytes(args.save, buf.getvalue())
    return 0
