"""`edgekws listen MODEL --file WAV | --mic` and `edgekws eval-stream MODEL DATA`."""

from __future__ import annotations

import json
import sys

from edgekws import cliargs
from edgekws.errors import EdgekwsError

MAX_NEGATIVE_MINUTES = 600   # 10 h of 16 kHz audio: about 1.2 GB held in memory
ENGINE_HELP = "int8 engine: numpy (reference), onnx (onnxruntime) or c (firmware host library); default %(default)s"


def register(sub) -> None:
    p = sub.add_parser("listen", help="streaming detection from a WAV file or the microphone",
                       description="Run the streaming detector (frontend, int8 model every few hops, "
                                   "smoothing, threshold, refractory period) over a WAV file of any "
                                   "length or live microphone audio, and print each detection.")
    p.add_argument("model", help="quantized model bundle folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", metavar="WAV", help="a WAV file (any rate, channels, length), heard as if 1 s of "
                     "silence followed it, so that a command said at its very end is detected")
    src.add_argument("--mic", action="store_true", help="listen to the microphone until Ctrl-C")
    p.add_argument("--engine", default="numpy", choices=("numpy", "onnx", "c"), help=ENGINE_HELP)
    p.add_argument("--device", help="input device id or part of its name (with --mic; see edgekws devices)")
    p.add_argument("--rate", type=cliargs.positive_int, metavar="HZ",
                   help="open the --mic device at this rate (default: its own; 16000, 44100 or 48000 suit)")
    p.add_argument("--seconds", type=cliargs.positive_float, default=None,
                   help="with --mic: stop after this many seconds")
    p.add_argument("--json", action="store_true", help="one JSON object per detection (JSON lines)")
    p.set_defaults(func=run_listen)

    e = sub.add_parser("eval-stream", help="hit rate, false accepts per hour and latency on long streams",
                       description="Build long streams from a dataset split (command clips separated by "
                                   "background noise and unknown words, plus a long stream of noise and "
                                   "unknown words only), run the detector and report hit rate, false "
                                   "accepts per hour and latency. --tune first chooses the smoothing and "
                                   "threshold on validation streams and stores them in the bundle.")
    e.add_argument("model", help="quantized model bundle folder")
    e.add_argument("data", help="dataset folder (Speech Commands layout)")
    e.add_argument("--engine", default="onnx", choices=("numpy", "onnx", "c"), help=ENGINE_HELP)
    e.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="split evaluated (default test; all: every clip, e.g. your own recordings)")
    e.add_argument("--tune", action="store_true", help="tune on the validation split first and store the result")
    e.add_argument("--tune-split", default="val", choices=("train", "val", "test", "all"),
                   help="split the tuning streams are built from (default val; all: every clip of DATA, e.g. "
                        "your own recordings after edgekws retrain)")
    e.add_argument("--target-fa", type=float, default=None,
                   help="with --tune: false accepts per hour allowed (default 1)")
    e.add_argument("--shrink", type=float, default=None, metavar="S",
                   help="with --tune: each command's threshold moves this share of the way from the "
                        "shared one to its own validation limit (default 0.5; 0 = one threshold for all, "
                        "safer with few validation speakers)")
    e.add_argument("--negative-minutes", type=cliargs.positive_float, default=60.0,
                   help="length of the noise + unknown-word stream (default 60 minutes; tuning needs an "
                        "hour or more to resolve 1 false accept per hour; at most 600)")
    e.add_argument("--hop-every", type=cliargs.positive_int, default=None, metavar="N",
                   help="run the model every N feature frames of 20 ms (default: the bundle's setting; "
                        "stored with --tune)")
    e.add_argument("--seed", type=cliargs.seed, default=0, help="seed of the stream construction (default 0)")
    e.add_argument("--snr", default="10,20", metavar="LO,HI|clean",
                   help="background noise level in dB below the speech level, drawn per 5 s segment "
                        "(default 10,20); clean = no noise")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=run_eval_stream)


def _print_detection(d, as_json: bool) -> None:
    if as_json:
        print(json.dumps(d.to_dict()), flush=True)
    else:
        print(f"{d.time:9.3f} s  {d.label:<12} score {d.score:.3f}", flush=True)


def run_listen(args) -> int:
    from edgekws.bundle import Bundle
    from edgekws.stream.pipeline import StreamSetup, StreamingDetector, detect_audio

    if args.file:
        for opt in ("device", "seconds", "rate"):
            if getattr(args, opt) is not None:
                raise EdgekwsError(f"--{opt} is for --mic; a --file is read whole")
    setup = StreamSetup.from_bundle(Bundle.load(args.model))
    if setup.config.voice_shift:
        print(f"listen: every frame heard moved by {setup.config.voice_shift:+d} mel bands (the bundle's calibrated "
              "voice_shift)", file=sys.stderr)
    if setup.config.voice_offset is not None:
        print("listen: every embedding moved by the bundle's calibrated voice_offset (edgekws calibrate --method norm)",
              file=sys.stderr)
    if args.file:
        from edgekws.audio import read_wav

        import numpy as np

        sr = setup.feature_config.sample_rate
        audio = read_wav(args.file, sr=sr, dtype="int16")
        # the file ends as if the speaker then fell silent (detect_audio's end_silence): a 1 s clip
        # of one word gave nothing without it
        dets = detect_audio(setup, audio, args.engine)
        for d in dets:
            _print_detection(d, args.json)
        if not args.json:
            print(f"{args.file}: {len(audio) / sr:.2f} s, "
                  f"{len(dets)} detection(s), engine {args.engine}", file=sys.stderr)
        return 0
    return _listen_mic(setup, args)


def _listen_mic(setup, args) -> int:
    import numpy as np

    from edgekws.audio import StreamResampler
    from edgekws.featcache import float_to_int16   # x 32768, as --file's decoding: the same samples
    from edgekws.recording import SoundDeviceSource, choose_input, load_sounddevice
    from edgekws.stream.pipeline import StreamingDetector

    sr = setup.feature_config.sample_rate
    sd = load_sounddevice()
    dev, rate = choose_input(sd, args.device, args.rate)
    live = StreamingDetector(setup, args.engine)
    print(f"listening on input device {dev.index} '{dev.name}' at {rate} Hz (Ctrl-C stops)", file=sys.stderr)
    # one resampler for the whole stream: resampling each block alone clicked at every block edge
    rs = StreamResampler(rate, sr) if rate != sr else None
    for block in SoundDeviceSource(sd, dev, rate).blocks(args.seconds):
        x = rs.push(block) if rs is not None else block
        for d in live.push(float_to_int16(np.asarray(x))):
            _print_detection(d, args.json)
    # --seconds is over: the stream ends as a file does (a word said at the very end still counts)
    rest = live.push(float_to_int16(rs.flush())) if rs is not None else []
    for d in rest + live.flush():
        _print_detection(d, args.json)
    return 0


def parse_snr(text: str):
    """`--snr 10,20` -> (10.0, 20.0); `clean` -> None."""
    if text.strip().lower() == "clean":
        return None
    try:
        snr = tuple(float(v) for v in text.split(","))
    except ValueError:
        snr = ()
    if len(snr) != 2 or not -20 <= snr[0] <= snr[1] <= 80:
        raise EdgekwsError(f"--snr {text!r}: expected LO,HI in dB with -20 <= LO <= HI <= 80, or clean")
    return snr


def _describe(m: dict) -> str:
    kinds = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in m["false_accepts_by_kind"].items() if v)
    if m["false_accept_clips"]:
        kinds += f" (said by {m['false_accept_clips']} clip{'s' if m['false_accept_clips'] > 1 else ''})"
    return (f"hit rate {m['hit_rate']:.3f} ({m['hits']}/{m['commands']}), "
            f"{m['false_accepts_per_hour']:.2f} false accepts/h ({m['false_accepts']} in "
            f"{m['non_command_hours']:.2f} h{': ' + kinds if kinds else ''}; 95% upper bound "
            f"{m['false_accepts_per_hour_upper95']:.2f}/h), latency median {ms(m['latency_ms_median'])}, "
            f"p90 {ms(m['latency_ms_p90'])}")


def ms(v) -> str:
    """A latency in ms for print; "n/a" when there was no hit to time."""
    return "n/a" if v is None else f"{v:.0f} ms"


def run_eval_stream(args) -> int:
    from edgekws.bundle import Bundle
    from edgekws.stream.detector import MAX_HOP_EVERY, refractory_steps
    from edgekws.stream.evalstream import evaluate_streams, make_streams, tune
    from edgekws.stream.pipeline import StreamSetup

    if not 0 <= args.negative_minutes <= MAX_NEGATIVE_MINUTES:   # the stream is held in memory
        raise EdgekwsError(f"--negative-minutes: must be in (0, {MAX_NEGATIVE_MINUTES}], got {args.negative_minutes:g}")
    for name in ("target_fa", "shrink"):
        if getattr(args, name) is not None and not args.tune:
            raise EdgekwsError(f"--{name.replace('_', '-')} sets how --tune tunes; give --tune too")
    if args.target_fa is None:
        args.target_fa = 1.0
    if not 0 <= args.target_fa < float("inf"):
        raise EdgekwsError(f"--target-fa must be a finite number >= 0, got {args.target_fa}")
    if args.shrink is not None and not 0 <= args.shrink <= 1:  # before the streams are built
        raise EdgekwsError(f"--shrink: must be a number in [0, 1], got {args.shrink!r}")
    snr = parse_snr(args.snr)
    bundle = Bundle.load(args.model)
    setup = StreamSetup.from_bundle(bundle)
    if args.hop_every is not None:
        if not 1 <= args.hop_every <= MAX_HOP_EVERY:     # StreamConfig.check's range, named by the flag
            raise EdgekwsError(f"--hop-every: must be in [1, {MAX_HOP_EVERY}], got {args.hop_every}")
        setup.config.hop_every = args.hop_every
        setup.config.refractory = refractory_steps(args.hop_every)
        setup.check()
    result = {"snr_db": list(snr) if snr else "clean", "model": str(bundle.path), "data": str(args.data),
              "engine": args.engine, "seed": args.seed, "negative_minutes": args.negative_minutes}
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.tune:
        log(f"tuning on {args.tune_split} streams ({args.negative_minutes:g} min of non-commands, engine {args.engine})")
        val = make_streams(bundle, args.data, args.tune_split, args.seed, args.negative_minutes, snr)
        shrink = {} if args.shrink is None else {"shrink": args.shrink}
        result["tuning"] = tune(setup, *val, target_fa_per_hour=args.target_fa, engine=args.engine, **shrink)
        result["tuning"]["snr_db"] = result["snr_db"]
        result["tuning"]["split"] = args.tune_split
    log(f"evaluating on {args.split} streams")
    # built before the tuning is saved: a split that cannot be evaluated leaves the stored thresholds
    streams = make_streams(bundle, args.data, args.split, args.seed + 1, args.negative_minutes, snr)
    if args.tune:
        bundle.update(stream=setup.config.to_dict())
    result["split"] = args.split
    result["config"] = {k: v for k, v in setup.config.to_dict().items() if k != "tuning"}
    result["metrics"] = evaluate_streams(setup, *streams, engine=args.engine)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    c = setup.config
    if args.tune:
        thr = ", ".join(f"{lab} {q / 32768:.2f}" for lab, q in c.thresholds.items())
        print(f"tuned on {args.tune_split} streams: hop every {c.hop_every} frames, smooth {c.smooth}, thresholds "
              f"{thr} -> {_describe(result['tuning']['validation'])}; "
              f"stored in {bundle.path}/manifest.json")
    m = result["metrics"]
    noise = "clean" if snr is None else f"noise {snr[0]:g}-{snr[1]:g} dB below speech"
    print(f"{args.split} streams ({m['stream_seconds'] / 60:.1f} min, {noise}, engine {args.engine}, "
          f"hop every {c.hop_every} frames, smooth {c.smooth}): {_describe(m)}")
    return 0
