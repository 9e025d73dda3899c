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
        dropped_shift |= stream.pop("voice_offset", None) is not None
        new.update(stream=stream)
    sub = np.random.default_rng([seed, 0xCA1]).permutation(len(feats))[:CALIB_MAX]   # calibration
    # no voice reference: these clips are the new voice's, not the training voices'
    quantize_bundle(new, feats[np.sort(sub)], seed=seed, log=lambda *a: None, reference=False)
    new.finish()
    copied = (f" (stream thresholds copied from {base.path}: re-tune with edgekws eval-stream --tune"
              + ("; its voice calibration is not copied: calibrate the new model again" if dropped_shift else "") + ")"
              if base.manifest.get("stream") else "")
    log(f"{new.path}: BatchNorm statistics of {len(paths)} clip(s) of {clips}, re-quantized on them{copied}")
    return new


# ---- voice calibration -----------------------------------------------------------------------

METHODS = ("shift", "norm")


def calibrate(model, clips, *, max_shift: int | None = None, engine: str | None = None, save: bool = False,
              log=print, method: str = "shift", voice_ref=None) -> dict:
    """The voice calibration of bundle `model` from the WAVs under folder `clips` (recordings of one
    voice, any words): method "shift" (calibrate_band_shift, below) or "norm" (calibrate_norm)."""
    if method not in METHODS:
        raise EdgekwsError(f"calibrate: method (--method) must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "norm":
        if max_shift is not None:
            raise EdgekwsError("--max-shift is for --method shift; --method norm moves the embedding, not the bands")
        return calibrate_norm(model, clips, engine=engine, save=save, log=log, voice_ref=voice_ref)
    if voice_ref is not None:
        raise EdgekwsError("--voice-ref is for --method norm")
    return calibrate_band_shift(model, clips, max_shift=max_shift, engine=engine, save=save, log=log)


def _retune_note(cfg, what: str) -> bool:
    """A tuned detector (not just noted) whose voice calibration changes: its thresholds were chosen on
    frames heard another way; the note says so. True when the thresholds need tuning again."""
    retune = any(k != "note" for k in cfg.tuning)
    if retune:
        cfg.tuning = {"note": f"{what} by edgekws calibrate: tune the thresholds again (edgekws eval-stream --tune)"}
    return retune


def voice_clips(clips) -> list[Path]:
    """The WAVs under folder `clips`: at least MIN_CALIBRATE_CLIPS recordings of one voice, what both
    calibrations hear."""
    paths = clip_paths(clips)
    if len(paths) < MIN_CALIBRATE_CLIPS:
        raise EdgekwsError(f"{clips}: {len(paths)} WAV file(s); calibrating needs at least {MIN_CALIBRATE_CLIPS} "
                           "recordings of the voice")
    return paths


def voice_features(paths, fc) -> np.ndarray:
    """int8 features of recordings `paths` for FeatureConfig `fc`."""
    from edgekws.featcache import load_clips
    from edgekws.features import compute_features

    return compute_features(load_clips(paths, fc.sample_rate, fc.sample_rate), fc)


def calibrate_band_shift(model, clips, *, max_shift: int | None = None, engine: str | None = None,
                         save: bool = False, log=print) -> dict:
    """The voice shift of the WAVs under folder `clips` (recordings of one voice, any words) for bundle
    `model` (edgekws.evaluate.calibrate_shift, int8 when the bundle is quantized); with `save`, stored
    as the bundle's stream setting voice_shift. Returns {"shift", "scores" {shift: mean largest
    probability}, "n_clips", "engine", "saved"}."""
    from edgekws.bundle import as_bundle
    from edgekws.evaluate import DEFAULT_CALIBRATE_SHIFT, KeywordModel, calibrate_shift

    bundle = as_bundle(model)
    if engine is None:
        engine = "int8" if bundle.has("int8.npz") else "float"
    if save and not bundle.has("int8.npz"):
        raise EdgekwsError(f"{bundle.path}: not quantized; the stream setting is for the int8 model "
                           "(edgekws quantize MODEL first)")
    if save and engine == "float":
        raise EdgekwsError("--save with --engine float: the stream setting is for the int8 model that streams "
                           "run; choose it with --engine int8 or c")
    paths = voice_clips(clips)
    km = KeywordModel(bundle, engine)
    feats = voice_features(paths, km.feature_config)
    shift, scores = calibrate_shift(km.engine, feats, DEFAULT_CALIBRATE_SHIFT if max_shift is None else max_shift)
    saved = False
    if save:
        from edgekws.stream.detector import StreamConfig

        cfg = StreamConfig.from_bundle(bundle)
        replaced = cfg.voice_offset is not None
        retune = False
        if cfg.voice_shift != shift or replaced:   # thresholds tuned on frames heard another way: tune again
            retune = _retune_note(cfg, f"voice_shift changed to {shift}")
        cfg.voice_shift, cfg.voice_offset = shift, None
        cfg.check(bundle.labels)
        bundle.update(stream=cfg.to_dict())
        saved = True
    for s in sorted(scores):
        log(f"  shift {s:+d}: mean largest probability {scores[s]:.4f}{'  <- chosen' if s == shift else ''}")
    log(f"{bundle.path}: voice shift {shift:+d} bands from {len(paths)} recording(s) of {clips} ({engine}; "
        f"{scores[shift]:.4f} against {scores[0]:.4f} as heard)")
    if saved:
        log(f"  stored in the bundle's stream settings: listen, eval-stream and the cortex-m4 and pi exports now hear "
            f"every frame moved by {shift:+d} (eval and predict: --voice-shift {shift})"
            + ("; the voice_offset of --method norm is replaced" if replaced else ""))
        if retune:
            log("  the detector's thresholds were tuned on frames heard without this shift: tune them again "
                "(edgekws eval-stream MODEL DATA --tune)")
    else:
        log("  --save stores it in the bundle for listen, eval-stream and export; eval and predict take "
            f"--voice-shift {shift}")
    if len(paths) < 20:
        log(f"  note: {len(paths)} recordings; 20-40 give a surer choice")
    return {"method": "shift", "shift": shift, "scores": {str(s): v for s, v in scores.items()},
            "n_clips": len(paths), "engine": engine, "saved": saved}


def norm_reference(bundle, backbone, voice_ref=None) -> tuple[np.ndarray, str]:
    """The training voices' average int8 embedding: the train split of dataset `voice_ref` when
    given, else the one `edgekws quantize` / `retrain` stored in the bundle. Returns (reference, where)."""
    from edgekws.voicenorm import reference, stored_reference

    if voice_ref is None:
        ref = stored_reference(bundle)
        if ref is None:
            raise EdgekwsError(f"{bundle.path}: has no voice reference (quantized before edgekws stored one): "
                               "quantize it again, or pass the training dataset with --voice-ref DATA")
        if len(ref) != backbone.embed_size:
            raise BundleError(f"{bundle.path}: its voice reference has {len(ref)} values, the model's embedding "
                              f"{backbone.embed_size}")
        return ref, "the bundle's"
    from edgekws.evaluate import voice_reference_data
    from edgekws.retrain.core import dataset_speakers

    data = voice_reference_data(bundle, voice_ref)   # eval --voice-ref's check of the folder
    words = [w for w in bundle.labels if not w.startswith("_")]
    feats, _, _, speakers = dataset_speakers(data, words, "train")
    if not len(feats):
        raise EdgekwsError(f"--voice-ref {voice_ref}: its training split has no clips")
    return reference(backbone.embed(feats), speakers), f"the train split of {voice_ref}"


def calibrate_norm(model, clips, *, engine: str | None = None, save: bool = False, log=print,
                   voice_ref=None) -> dict:
    """Voice normalization (edgekws/voicenorm.py) for the WAVs under folder `clips` (one voice, any
    words): the voice's offset, its average int8 embedding less the training voices' (norm_reference),
    by the numpy reference ("int8", default) or the firmware ("c", ekws_voice_offset); with `save`,
    stored as the bundle's stream setting voice_offset (listen, eval-stream and the cortex-m4 and pi
    exports then move every embedding by it: ekws_pipeline_set_voice_offset). Returns {"method",
    "offset", "size" (mean |offset|), "scores" {"as heard", "normalized": mean largest probability of
    the clips}, "n_clips", "engine", "reference", "saved"}."""
    from edgekws.bundle import as_bundle
    from edgekws.evaluate import search_spread
    from edgekws.features import FeatureConfig
    from edgekws.quant import load_quantized
    from edgekws.quant.qmodel import layer_forward
    from edgekws.retrain.core import Backbone
    from edgekws.voicenorm import DEFAULT_CLIPS, normalize, offset_of

    bundle = as_bundle(model)
    engine = engine or "int8"
    if engine not in ("int8", "c"):
        raise EdgekwsError(f"--method norm runs on the int8 model (--engine int8 or c), not {engine!r}")
    if not bundle.has("int8.npz"):
        raise EdgekwsError(f"{bundle.path}: not quantized; voice normalization moves the int8 embedding "
                           "(edgekws quantize MODEL first)")
    qm = load_quantized(bundle)
    backbone = Backbone.from_quantized(qm)
    paths = voice_clips(clips)
    ref, where = norm_reference(bundle, backbone, voice_ref)
    feats = voice_features(paths, FeatureConfig.from_dict(bundle.manifest["feature_config"]))
    emb = backbone.embed(feats, "c" if engine == "c" else "numpy")
    if engine == "c":
        from edgekws.export.cruntime import voice_offset_c

        offset = voice_offset_c(emb, ref)
    else:
        offset = offset_of(emb, ref)
    head = qm.layers[-1]
    scores = {}
    for name, e in (("as heard", emb), ("normalized", normalize(emb, np.broadcast_to(offset, emb.shape)))):
        z = layer_forward(head, np.ascontiguousarray(e)).astype(np.float64) * qm.output_scale   # zero point cancels
        scores[name] = float(np.mean(1.0 / search_spread(z)))
    saved = retune = False
    if save:
        from edgekws.stream.detector import StreamConfig

        cfg = StreamConfig.from_bundle(bundle)
        was_shift = cfg.voice_shift
        if cfg.voice_offset != offset.tolist():
            retune = _retune_note(cfg, "voice_offset changed")
        cfg.voice_shift, cfg.voice_offset = 0, [int(v) for v in offset]
        cfg.check(bundle.labels)
        bundle.update(stream=cfg.to_dict())
        saved = True
    size = float(np.mean(np.abs(offset)))
    log(f"{bundle.path}: voice offset from {len(paths)} recording(s) of {clips} ({engine}; mean |offset| {size:.2f} "
        f"int8 steps of the embedding, from {where} reference)")
    log(f"  mean largest probability of the clips: {scores['as heard']:.4f} as heard, {scores['normalized']:.4f} "
        "normalized")
    if saved:
        log("  stored in the bundle's stream settings (voice_offset): listen, eval-stream and the cortex-m4 and pi "
            "exports now move every embedding by it" + (f"; the voice_shift {was_shift:+d} is replaced" if was_shift else ""))
        if retune:
            log("  the detector's thresholds were tuned without this offset: tune them again "
                "(edgekws eval-stream MODEL DATA --tune)")
    else:
        log("  --save stores it in the bundle for listen, eval-stream and export")
    if len(paths) < DEFAULT_CLIPS:
        log(f"  note: {len(paths)} recordings; {DEFAULT_CLIPS} or more give the measured gains (RESULTS.md, Voices, "
            "session 43: 3 lost, 5 gave part of it)")
    return {"method": "norm", "offset": offset.tolist(), "size": size, "scores": scores, "n_clips": len(paths),
            "engine": engine, "reference": where, "saved": saved}


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
    c.add_argument("--method", default="shift", choices=METHODS,
                   help="shift: the mel-band shift the model is surest at (default); norm: voice normalization, "
                        "the voice's average embedding moved onto the training voices' (int8 models)")
    c.add_argument("--max-shift", type=cliargs.voice_search, default=None, metavar="K",
                   help="try shifts -K..K bands (default 4; --method shift)")
    c.add_argument("--voice-ref", metavar="DATA", default=None,
                   help="--method norm: the training voices' average from the train split of DATA (default: the "
                        "one the bundle stores)")
    c.add_argument("--engine", default=None, choices=("float", "int8", "c"),
                   help="engine that hears the clips (default int8 when the bundle is quantized, else float)")
    c.add_argument("--save", action="store_true", help="store the calibration in the bundle's stream settings")
    c.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    c.set_defaults(func=_run_calibrate)


def _run(args) -> int:
    adapt(args.model, args.clips, args.out, limit=args.limit, seed=args.seed, overwrite=args.force)
    return 0


def _run_calibrate(args) -> int:
    import json
    import sys

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print   # noqa: E731
    result = calibrate(args.model, args.clips, max_shift=args.max_shift, engine=args.engine, save=args.save, log=log,
                       method=args.method, voice_ref=args.voice_ref)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0
