"""`edgekws adapt MODEL CLIPS --out MODEL2`: fit a model's BatchNorm statistics to a new voice.
`edgekws calibrate MODEL CLIPS [--save]`: the band shift at which a model hears a new voice best.

A model learns the statistics of its training voices' activations. A few dozen recordings of a new
voice — no labels needed: any words, a dataset folder or a folder of WAVs — re-estimate them
(AdaBN, edgekws.nn.adapt_batchnorm), and the model is re-quantized with the same clips as
calibration. On the leave-one-engine-out benchmark (RESULTS.md, Voices), 36 unlabeled clips took
Japanese eSpeak NG -> Open JTalk from 60.2% to 77.9% (int8).

BatchNorm is folded into the int8 weights, so this runs where the float weights are (a laptop, a
Raspberry Pi), not on an MCU. Adapt the base model first, then retrain its head (`edgekws retrain`).

Calibration needs no float weights (only the int8 model), so it also runs on an MCU
(ekws_model_calibrate_shift): the model hears the recordings moved by -K..K mel bands, and the shift
where it is surest of its answers (edgekws.evaluate.calibrate_shift) is the voice's; `--save` stores
it in the bundle's stream settings, and every frame that listen, eval-stream and the cortex-m4 and pi
exports hear moves by it
(ekws_pipeline_set_voice_shift): one inference per step, where voice search costs 2K more. On the
leave-one-engine-out benchmark, 36 unlabeled clips took eSpeak NG -> Open JTalk from 79.8% to 84.2%
(five trainings; RESULTS.md, Voices: session 36).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekws import cliargs
from edgekws.errors import BundleError, EdgekwsError, is_int
from edgekws.fileio import check_outside, not_a_folder

MIN_CLIPS = 8
MIN_CALIBRATE_CLIPS = 5   # 5 clips per voice already chose well on average, 10-36 more surely (RESULTS.md)
# adapt_batchnorm runs every clip in one training-mode batch: about 2 MB of memory a clip (1.2 GB for
# 480 on the default model). Without --clips at most this many (a seeded choice), which fits a Pi;
# 36 recordings already gave the measured gains (RESULTS.md)
DEFAULT_CLIPS = 200
CALIB_MAX = 1000


def clip_paths(folder) -> list[Path]:
    """Every WAV under `folder` except background noise recordings, sorted."""
    from edgekws.data import BACKGROUND_DIR, wav_files

    folder = Path(folder)
    if problem := not_a_folder(folder, "folder of recordings"):
        raise EdgekwsError(f"{folder}: {problem}")
    return [p for p in wav_files(folder, recursive=True) if BACKGROUND_DIR not in p.relative_to(folder).parts
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def adapt(model, clips, out, *, limit: int | None = None, seed: int = 0, overwrite: bool = False, log=print):
    """Write bundle `out`: bundle `model` with its BatchNorm statistics re-estimated on the WAVs under
    folder `clips` (at most `limit`, DEFAULT_CLIPS if None: a seeded choice) and re-quantized on them. Returns the new Bundle."""
    from edgekws.bundle import Bundle, as_bundle, check_bundle_folder
    from edgekws.data import BACKGROUND_DIR, wav_files
    from edgekws.evaluate import FloatNetwork
    from edgekws.featcache import cut_silence, float_to_int16, load_clips, room_noises
    from edgekws.features import compute_features
    from edgekws.nn import adapt_batchnorm
    from edgekws.quant import quantize_bundle

    base = as_bundle(model)
    if Path(out).resolve() == base.path.resolve():
        raise EdgekwsError(f"--out {out}: must differ from the model folder")
    check_outside(out, clips, "CLIPS")
    check_outside(out, base.path, "MODEL")
    check_bundle_folder(out, overwrite=overwrite)
    if base.manifest.get("head"):
        raise BundleError(f"{base.path}: has a retrained head; adapt the base model, then retrain it")
    from edgekws.models import arch_budget

    if not arch_budget(base.manifest["architecture"]).int8_ready:   # found after the work, with a half bundle
        raise EdgekwsError(f"{base.path}: its architecture has layers the int8 pipeline does not support, and "
                           "adapt re-quantizes the model")
    if limit is not None and (not is_int(limit) or limit < MIN_CLIPS):
        raise EdgekwsError(f"--clips: must be an integer >= {MIN_CLIPS}, got {limit!r}")
    paths = clip_paths(clips)
    if len(paths) < MIN_CLIPS:
        raise EdgekwsError(f"{clips}: {len(paths)} WAV file(s); adapting needs at least {MIN_CLIPS} recordings "
                           "of the new voice")
    if limit is None and len(paths) > DEFAULT_CLIPS:
        log(f"note: {clips}: {len(paths)} recordings; adapting on {DEFAULT_CLIPS} of them (about 2 MB of memory "
            "each: --clips N for another number)")
    n = limit if limit is not None else DEFAULT_CLIPS
    if len(paths) > n:
        pick = np.sort(np.random.default_rng([seed, 0xADA]).choice(len(paths), n, replace=False))
        paths = [paths[i] for i in pick]
    net = FloatNetwork(base)
    fc = net.feature_config
    audio = load_clips(paths, fc.sample_rate, fc.sample_rate)                       # 1 s each
    # as in training, about one example in twelve is background: cuts of FOLDER's _background_noise_
    # recordings (the room), or of white/pink/brown noise without them
    noises = room_noises(wav_files(Path(clips) / BACKGROUND_DIR), fc.sample_rate)
    quiet = cut_silence(noises, max(1, len(paths) // 11), audio.shape[1], np.random.default_rng([seed, 0x51]))
    feats = compute_features(np.concatenate([audio, float_to_int16(quiet)]), fc)
    adapt_batchnorm(net.model, net._input(feats))
    training = {k: v for k, v in base.manifest.get("training", {}).items() if k != "environment"}
    training["adapted"] = {"base_model": str(base.path), "clips": str(clips), "n_clips": len(paths), "seed": seed}
    new = Bundle.create(out, labels=base.labels, feature_config=base.manifest["feature_config"],
                        architecture=base.manifest["architecture"], training=training, overwrite=overwrite,
                        staged=True)
    new.write_npz("weights.npz", net.model.state_dict())
    if base.has("history.json"):
        new.write_json("history.json", base.read_json("history.json"))
    dropped_shift = False
    if base.manifest.get("stream"):
        stream = dict(base.manifest["stream"])
        dropped_shift = bool(stream.pop("voice_shift", 0))   # measured on the old statistics: calibrate again
        new.update(stream=stream)
    sub = np.random.default_rng([seed, 0xCA1]).permutation(len(feats))[:CALIB_MAX]   # calibration
    quantize_bundle(new, feats[np.sort(sub)], seed=seed, log=lambda *a: None)
    new.finish()
    copied = (f" (stream thresholds copied from {base.path}: re-tune with edgekws eval-stream --tune"
              + ("; its voice_shift is not copied: calibrate the new model again" if dropped_shift else "") + ")"
              if base.manifest.get("stream") else "")
    log(f"{new.path}: BatchNorm statistics of {len(paths)} clip(s) of {clips}, re-quantized on them{copied}")
    return new


# ---- voice calibration -----------------------------------------------------------------------

def calibrate(model, clips, *, max_shift: int | None = None, engine: str | None = None, save: bool = False,
              log=print) -> dict:
    """The voice shift of the WAVs under folder `clips` (recordings of one voice, any words) for bundle
    `model` (edgekws.evaluate.calibrate_shift, int8 when the bundle is quantized); with `save`, stored
    as the bundle's stream setting voice_shift. Returns {"shift", "scores" {shift: mean largest
    probability}, "n_clips", "engine", "saved"}."""
    from edgekws.bundle import as_bundle
    from edgekws.evaluate import DEFAULT_CALIBRATE_SHIFT, KeywordModel, calibrate_shift
    from edgekws.featcache import load_clips
    from edgekws.features import compute_features

    bundle = as_bundle(model)
    if engine is None:
        engine = "int8" if bundle.has("int8.npz") else "float"
    if save and not bundle.has("int8.npz"):
        raise EdgekwsError(f"{bundle.path}: not quantized; the stream setting is for the int8 model "
                           "(edgekws quantize MODEL first)")
    if save and engine == "float":
        raise EdgekwsError("--save with --engine float: the stream setting is for the int8 model that streams "
                           "run; choose it with --engine int8 or c")
    paths = clip_paths(clips)
    if len(paths) < MIN_CALIBRATE_CLIPS:
        raise EdgekwsError(f"{clips}: {len(paths)} WAV file(s); calibrating needs at least {MIN_CALIBRATE_CLIPS} "
                           "recordings of the voice")
    km = KeywordModel(bundle, engine)
    fc = km.feature_config
    feats = compute_features(load_clips(paths, fc.sample_rate, fc.sample_rate), fc)
    shift, scores = calibrate_shift(km.engine, feats, DEFAULT_CALIBRATE_SHIFT if max_shift is None else max_shift)
    saved = False
    if save:
        from edgekws.stream.detector import StreamConfig

        cfg = StreamConfig.from_bundle(bundle)
        retune = any(k != "note" for k in cfg.tuning) and cfg.voice_shift != shift   # tuned, not just noted
        if retune:   # thresholds tuned on frames heard another way: the demo and users tune again
            cfg.tuning = {"note": f"voice_shift changed to {shift} by edgekws calibrate: tune the thresholds "
                                  "again (edgekws eval-stream --tune)"}
        cfg.voice_shift = shift
        cfg.check(bundle.labels)
        bundle.update(stream=cfg.to_dict())
        saved = True
    for s in sorted(scores):
        log(f"  shift {s:+d}: mean largest probability {scores[s]:.4f}{'  <- chosen' if s == shift else ''}")
    log(f"{bundle.path}: voice shift {shift:+d} bands from {len(paths)} recording(s) of {clips} ({engine}; "
        f"{scores[shift]:.4f} against {scores[0]:.4f} as heard)")
    if saved:
        log(f"  stored in the bundle's stream settings: listen, eval-stream and the cortex-m4 and pi exports now hear "
            f"every frame moved by {shift:+d} (eval and predict: --voice-shift {shift})")
        if retune:
            log("  the detector's thresholds were tuned on frames heard without this shift: tune them again "
                "(edgekws eval-stream MODEL DATA --tune)")
    else:
        log("  --save stores it in the bundle for listen, eval-stream and export; eval and predict take "
            f"--voice-shift {shift}")
    if len(paths) < 20:
        log(f"  note: {len(paths)} recordings; 20-40 give a surer choice")
    return {"shift": shift, "scores": {str(s): v for s, v in scores.items()}, "n_clips": len(paths),
            "engine": engine, "saved": saved}


def register(sub) -> None:
    p = sub.add_parser("adapt", help="fit a model's BatchNorm statistics to a new voice (unlabeled clips)",
                       description="Re-estimate the BatchNorm statistics of MODEL on recordings of a new voice "
                                   "(any words, no labels: a dataset folder or a folder of WAVs) and re-quantize "
                                   "it. Runs on a laptop or a Pi. Then retrain its head if you have labels.")
    p.add_argument("model", help="model bundle (trained; not a retrained one)")
    p.add_argument("clips", help="folder of WAV recordings of the new voice (searched recursively)")
    p.add_argument("--out", metavar="MODEL2", required=True, help="new model bundle folder")
    p.add_argument("--clips", dest="limit", type=int, metavar="N",
                   help=f"use at most N recordings (seeded choice; default {DEFAULT_CLIPS}, about 2 MB of memory each)")
    p.add_argument("--seed", type=cliargs.seed, default=0, help="seed of the choice (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle in MODEL2")
    p.set_defaults(func=_run)

    c = sub.add_parser("calibrate", help="the band shift at which a model hears a new voice best (unlabeled clips)",
                       description="Hear recordings of one voice (any words, no labels) moved by -K..K mel bands "
                                   "and choose the shift where the model is surest of its answers; --save stores "
                                   "it in the bundle, and listen, eval-stream and the cortex-m4 / pi exports hear "
                                   "every frame moved by it (one inference per step). Runs on an MCU too "
                                   "(ekws_model_calibrate_shift).")
    c.add_argument("model", help="model bundle (quantized for --save)")
    c.add_argument("clips", help="folder of WAV recordings of the voice (searched recursively)")
    c.add_argument("--max-shift", type=cliargs.voice_search, default=None, metavar="K",
                   help="try shifts -K..K bands (default 4)")
    c.add_argument("--engine", default=None, choices=("float", "int8", "c"),
                   help="engine that hears the clips (default int8 when the bundle is quantized, else float)")
    c.add_argument("--save", action="store_true", help="store the shift in the bundle's stream settings")
    c.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    c.set_defaults(func=_run_calibrate)


def _run(args) -> int:
    adapt(args.model, args.clips, args.out, limit=args.limit, seed=args.seed, overwrite=args.force)
    return 0


def _run_calibrate(args) -> int:
    import json
    import sys

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print   # noqa: E731
    result = calibrate(args.model, args.clips, max_shift=args.max_shift, engine=args.engine, save=args.save, log=log)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
