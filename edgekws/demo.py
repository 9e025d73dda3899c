"""`edgekws demo`: the whole story end to end on synthesized data, resumable stage by stage.

    synthesize Japanese commands → train the five-layer model (numpy engine) → quantize to int8
    → export ONNX and C arrays → three-way parity (numpy int8 = onnxruntime int8 = C)
    → stream detection over synthesized Japanese streams → synthesize English commands
    → retrain the last layer with the C engine from a few English examples per word → evaluate
    → summary table

Each stage writes its outputs into WORKDIR and is skipped on a rerun when they are present and
valid (a bundle that loads and verifies, a dataset manifest), so an interrupted demo continues
where it stopped. WORKDIR/demo.json records the options: a rerun with others is refused, and a
folder of other files is never used. `--quick` runs a small version of every stage (a CI test runs it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekws import cliargs
from edgekws.errors import BundleError, DatasetError, EdgekwsError
from edgekws.fileio import make_dir
from edgekws.stream.cli import ms


@dataclass
class DemoPlan:
    """Sizes of every stage; `quick` shrinks them all."""

    speakers: int | None = None          # synth default (160) unless quick
    synth_quick: bool = False
    train_options: dict = field(default_factory=dict)   # train() keywords; empty = the defaults
    negative_minutes: float = 20.0      # tuning drives val false accepts to 0: short streams overfit
    shots: tuple[int, ...] = (1, 3, 5, 10, 20)
    seed: int = 0

    @classmethod
    def make(cls, quick: bool, seed: int = 0) -> "DemoPlan":
        if quick:
            from edgekws.train import NO_AUGMENT

            # 40 speakers (a few in each split); a short run of the default model without augmentation,
            # which learns fastest on so little data
            return cls(speakers=40, synth_quick=True,
                       train_options=dict(epochs=10, batch=16, patience=10, **NO_AUGMENT, label_smoothing=0.0),
                       negative_minutes=1.0, shots=(1, 3, 5), seed=seed)
        return cls(seed=seed)


C_FILES = ("model.bin", "ekws_model_data.c", "ekws_model_data.h")
MARKER = "demo.json"   # the demo's own workdir: its options, so a rerun continues the same run


def claim_workdir(work: Path, quick: bool, seed: int) -> None:
    """Make `work` the demo's: a new or empty folder gets the marker; one with the marker must have
    been started with the same options (its stages are reused); anything else is the user's."""
    from edgekws.fileio import atomic_write_text, other_files

    mine = {"format": "edgekws-demo", "quick": bool(quick), "seed": int(seed)}
    marker = work / MARKER
    if marker.is_file():
        try:
            was = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            was = None
        if not isinstance(was, dict) or was.get("format") != "edgekws-demo":
            raise EdgekwsError(f"--workdir {work}: {MARKER} is not an edgekws demo record; choose another --workdir")
        if (was.get("quick"), was.get("seed")) != (mine["quick"], mine["seed"]):
            said = ("--quick" if was.get("quick") else "no --quick") + f", --seed {was.get('seed')}"
            raise EdgekwsError(f"--workdir {work}: holds a demo run with {said}; rerun it with the same options "
                               "to continue it, or choose another --workdir")
        return
    if others := other_files(work):
        raise EdgekwsError(f"--workdir {work}: holds files that are not an edgekws demo ({others}); choose an "
                           "empty or new folder")
    make_dir(work)
    atomic_write_text(marker, json.dumps(mine) + "\n")


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _dataset_ready(root: Path) -> bool:
    from edgekws.synth import read_manifest

    try:
        read_manifest(root)
        return True
    except DatasetError:
        return False


def _bundle_ready(path: Path, *need: str):
    """The bundle at `path` if it loads and holds the files `need`, else None."""
    from edgekws.bundle import Bundle

    try:
        b = Bundle.load(path)
    except BundleError:
        return None
    return b if all(b.has(n) for n in need) else None


def stage_synth(work: Path, lang: str, plan: DemoPlan) -> Path:
    import shutil

    from edgekws.synth import synthesize_dataset

    out = work / "data" / lang
    if _dataset_ready(out):
        _log(f"synth {lang}: {out} already there, skipped")
        return out
    if out.is_dir() and not out.is_symlink():   # an interrupted synthesis of this demo (the workdir is ours)
        _log(f"synth {lang}: removing the unfinished {out}")
        shutil.rmtree(out)
    _log(f"synth {lang}: synthesizing commands, unknown words and noise into {out}")
    t = time.perf_counter()
    synthesize_dataset(out, lang, seed=plan.seed + (0 if lang == "ja" else 1), quick=plan.synth_quick,
                       speakers=plan.speakers, overwrite=True, progress=True)
    _log(f"synth {lang}: done in {time.perf_counter() - t:.0f} s")
    return out


def stage_train(work: Path, data: Path, plan: DemoPlan):
    from edgekws.train import CHECKPOINT, train

    out = work / "models" / "ja"
    if done := _bundle_ready(out, "weights.npz", "history.json"):
        trained_on = (done.manifest.get("training") or {}).get("dataset")
        if trained_on and Path(trained_on).resolve() == data.resolve():
            _log(f"train: {out} already trained, skipped")
            return done
        _log(f"train: {out} was trained on {trained_on}, not {data}: training again")
    resume = (out / CHECKPOINT).exists()
    _log(f"train: five-layer model on {data} with the numpy engine" + (" (resuming)" if resume else ""))
    t = time.perf_counter()
    bundle = train(data, out, seed=plan.seed, resume=resume, overwrite=not resume, **plan.train_options)
    _log(f"train: done in {time.perf_counter() - t:.0f} s")
    return bundle


def stage_quantize_export(bundle):
    from edgekws.export import export_c_dir, export_onnx
    from edgekws.quant import quantize_bundle

    if not bundle.has("int8.npz"):
        _log("quantize: post-training int8 quantization, calibrated on training features")
        quantize_bundle(bundle, log=lambda m: _log(f"quantize: {m}"))
    else:
        _log("quantize: int8.npz already there, skipped")
    if not (bundle.has("model.onnx") and bundle.has("model.int8.onnx")):
        sizes = export_onnx(bundle, log=lambda m: _log(f"export: {m}"))
        _log("export: " + ", ".join(f"{k} {v} B" for k, v in sizes.items()))
    if not all(bundle.has(f"c/{n}") for n in C_FILES):   # all three: an export stopped half-way is redone
        sizes = export_c_dir(bundle)
        _log("export: C arrays " + ", ".join(f"{k} {v} B" for k, v in sizes.items()))
    return bundle


def test_arrays(bundle, data: Path, split: str = "test", seed: int = 0):
    """Balanced split arrays (audio, int8 features, labels) of `data`, with the bundle's features."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.features import FeatureConfig

    fc = FeatureConfig.from_dict(bundle.manifest["feature_config"])
    ds = load_dataset(data, bundle.labels[2:])
    return split_arrays(ds, split, FeatureCache(default_cache_dir(data), fc), seed=seed)


def stage_parity(bundle, arrays) -> dict:
    """int8 logits of numpy, onnxruntime and C on every test clip (and float accuracy next to them)."""
    from edgekws.evaluate import load_model
    from edgekws.quant import load_quantized
    from edgekws.stream.engines import make_engine

    qm = load_quantized(bundle)
    feats, y = arrays.features, arrays.labels
    logits = {name: make_engine(name, qm, bundle).logits(feats) for name in ("numpy", "onnx", "c")}
    float_logits = load_model(bundle, "float").engine.logits_features(feats)
    res = {
        "clips": int(len(y)),
        "onnx_equal": bool(np.array_equal(logits["numpy"], logits["onnx"])),
        "c_equal": bool(np.array_equal(logits["numpy"], logits["c"])),
        "float_accuracy": float(np.mean(float_logits.argmax(1) == y)),
        "int8_accuracy": float(np.mean(logits["numpy"].argmax(1) == y)),
    }
    ok = res["onnx_equal"] and res["c_equal"]
    _log(f"parity: numpy int8 {'==' if ok else '!='} onnxruntime int8 {'==' if ok else '!='} C on "
         f"{res['clips']} test clips; accuracy float {res['float_accuracy']:.3f}, int8 {res['int8_accuracy']:.3f}")
    if not ok:
        raise EdgekwsError("parity: int8 logits differ between engines (this is a bug; please report it)")
    return res


def stage_stream(bundle, data: Path, plan: DemoPlan) -> dict:
    from edgekws.stream.evalstream import evaluate_streams, make_streams, tune
    from edgekws.stream.pipeline import StreamSetup

    setup = StreamSetup.from_bundle(bundle)
    if not (bundle.manifest.get("stream") or {}).get("tuning"):
        _log(f"stream: tuning smoothing and thresholds on clean validation streams ({plan.negative_minutes:g} min "
             "of non-commands)")
        val = make_streams(bundle, data, "val", plan.seed, plan.negative_minutes, snr_db=None)
        # one threshold for all commands (shrink 0): the demo's ~16 validation speakers say too few
        # unknown words to set each command's own limit (its test streams: shrink 0.5 92% hits at 17
        # false accepts an hour, shrink 0 90% at 7.5; RESULTS.md, The demo)
        tune(setup, *val, target_fa_per_hour=1.0, engine="onnx", shrink=0.0)
        bundle.update(stream=setup.config.to_dict())
    streams = make_streams(bundle, data, "test", plan.seed + 1, plan.negative_minutes, snr_db=None)
    m = evaluate_streams(setup, *streams, engine="c")
    _log(f"stream: clean test streams ({m['stream_seconds'] / 60:.1f} min, C engine): hits {m['hit_rate']:.3f}, "
         f"{m['false_accepts_per_hour']:.2f} false accepts/h, latency median {ms(m['latency_ms_median'])}")
    return m


def stage_retrain(work: Path, base, data_en: Path, plan: DemoPlan) -> dict:
    """Japanese base → English head with the C engine; accuracy on unseen English test speakers."""
    from edgekws.bundle import Bundle
    from edgekws.evaluate import evaluate
    from edgekws.retrain import retrain

    rows = {}
    for shots in plan.shots:
        out = work / "models" / f"en-{shots}shot"
        if not _bundle_ready(out, "int8.npz"):
            retrain(base, data_en, out, shots=shots, engine="c", split="train", seed=plan.seed,
                    overwrite=True, log=lambda m: None)
        res = evaluate(Bundle.load(out), data_en, split="test", engines=["int8"], seed=plan.seed)
        rows[shots] = res["int8"]["accuracy"]
        _log(f"retrain: {shots} English example(s) per word (C engine) -> int8 accuracy {rows[shots]:.3f} "
             f"on unseen English speakers")
    return rows


def run_demo(workdir: str | Path = "edgekws-demo", quick: bool = False, seed: int = 0) -> dict:
    """Run (or resume) the demo in `workdir`; returns the summary dict (also written to summary.json)."""
    from edgekws.fileio import atomic_write_text

    work = Path(workdir)
    if not 0 <= seed < 2 ** 63 - 1:   # the English data takes seed + 1
        raise EdgekwsError(f"--seed must be an integer in [0, 2^63 - 1), got {seed}")
    if work.exists() and not work.is_dir():
        raise EdgekwsError(f"--workdir {work}: is a file, not a folder")
    claim_workdir(work, quick, seed)
    plan = DemoPlan.make(quick, seed)
    t0 = time.perf_counter()
    data_ja = stage_synth(work, "ja", plan)
    bundle = stage_train(work, data_ja, plan)
    stage_quantize_export(bundle)
    arrays = test_arrays(bundle, data_ja, "test", plan.seed)
    parity = stage_parity(bundle, arrays)
    stream = stage_stream(bundle, data_ja, plan)
    data_en = stage_synth(work, "en", plan)
    shots = stage_retrain(work, bundle, data_en, plan)
    sizes = {n: (bundle.path / n).stat().st_size for n in ("weights.npz", "int8.npz", "model.onnx", "model.int8.onnx")}
    cdir = bundle.path / "c"
    sizes["c/"] = sum(p.stat().st_size for p in cdir.rglob("*") if p.is_file())
    summary = {"workdir": str(work), "quick": quick, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
               "parity": parity, "stream": {k: stream[k] for k in ("hit_rate", "false_accepts_per_hour",
                                                                    "latency_ms_median", "stream_seconds")},
               "retrain_shots": {str(k): v for k, v in shots.items()}, "sizes": sizes,
               "artefacts": {"japanese data": str(data_ja), "english data": str(data_en),
                             "japanese model": str(bundle.path), "C arrays": str(cdir),
                             "english heads": str(work / "models")}}
    atomic_write_text(work / "summary.json", json.dumps(summary, indent=1) + "\n")
    print(format_summary(summary))
    return summary


def format_summary(s: dict) -> str:
    p, st = s["parity"], s["stream"]
    lines = ["", "edgekws demo summary" + (" (quick)" if s["quick"] else ""), "=" * 60,
             f"Japanese model, test clips        {p['clips']}",
             f"  accuracy float / int8            {p['float_accuracy']:.3f} / {p['int8_accuracy']:.3f}",
             f"  int8 parity numpy=onnx=C         {'yes' if p['onnx_equal'] and p['c_equal'] else 'NO'}",
             f"  clean streams: hits / FA per h  {st['hit_rate']:.3f} / {st['false_accepts_per_hour']:.2f}"
             f"  (latency median {ms(st['latency_ms_median'])})",
             "English head (C engine), accuracy on unseen speakers:"]
    lines += [f"  {k:>3} example(s) per word          {v:.3f}" for k, v in s["retrain_shots"].items()]
    lines += ["Sizes (bytes):"] + [f"  {k:<32} {v}" for k, v in s["sizes"].items()]
    lines += ["Artefacts:"] + [f"  {k:<32} {v}" for k, v in s["artefacts"].items()]
    lines += [f"Total time {s['seconds']:.0f} s; summary in {s['workdir']}/summary.json"]
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole story end to end on synthesized data",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="edgekws-demo", help="folder for every artefact (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a small version of every stage (about a minute)")
    p.add_argument("--seed", type=cliargs.seed, default=0, help="random seed (default 0)")
    p.set_defaults(func=lambda a: (run_demo(a.workdir, a.quick, a.seed), 0)[1])
