"""int8 quantization: `edgekws quantize MODEL [--calib DATA]` and the "int8" engine of eval/predict.

    from edgekws.quant import quantize_model, quantize_bundle, load_quantized, int8_forward

BatchNorm folding and the op list: graph.py. Post-training quantization, storage and the integer
reference forward pass: qmodel.py. The one requantization rule: fixedpoint.py.

In the bundle: int8.npz holds the integer arrays ('<layer>.weight' int8, '.bias' int32,
'.multiplier' int32, '.shift' int32, '.weight_scale' float64) and manifest["quantization"] the
scheme, input/output scale and zero point, calibration summary and per-layer parameters.
"""

from __future__ import annotations

import numpy as np

from edgekws import cliargs
from edgekws.errors import BundleError, EdgekwsError, is_real
from edgekws.fileio import not_a_folder
from edgekws.quant.fixedpoint import quantize_multiplier, requantize, rounding_shift
from edgekws.quant.graph import FloatOp, float_forward, fold_model
from edgekws.quant.qmodel import QLayer, QuantModel, check_example_shape, int8_forward, quantize_ops

__all__ = ["quantize_model", "quantize_bundle", "load_quantized", "load_float_model", "int8_forward",
           "float_forward", "fold_model", "QuantModel", "QLayer", "FloatOp", "quantize_multiplier",
           "requantize", "rounding_shift", "Int8Network", "register"]

CALIB_MAX = 1000  # calibration examples drawn (seeded) from the training split


def dequantize_input(features: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """int8 features -> float32 model input, exactly as training feeds the float model."""
    return (features.astype(np.float32) - np.float32(zp)) * np.float32(scale)


def check_percentile(percentile) -> None:
    """None (min/max) or a number in (50, 100]: at 50 or less the clipped range turns inside out."""
    if percentile is None:
        return
    if not is_real(percentile) or not 50.0 < float(percentile) <= 100.0:   # NaN fails too
        raise EdgekwsError(f"--percentile must be in (50, 100], got {percentile!r}")


def quantize_model(model, calib_features: np.ndarray, input_scale: float, input_zp: int,
                   percentile: float | None = None) -> QuantModel:
    """Post-training quantization of a numpy-engine Sequential.

    model          : edgekws.nn.Sequential (eval-mode BatchNorm statistics are folded)
    calib_features : (N, T, F) or (N, *input_shape) int8 features used to calibrate activation ranges
    input_scale, input_zp : the features' quantization (FeatureConfig.input_scale / input_zero_point)
    percentile     : None = min/max ranges; else clip each range at this percentile (e.g. 99.99)
    """
    check_percentile(percentile)
    ops = fold_model(model)
    x = np.asarray(calib_features)
    if x.dtype != np.int8 or x.ndim < 2 or x.shape[0] == 0:
        raise EdgekwsError(f"calibration data must be a non-empty int8 feature array, got {x.dtype} {x.shape}")
    check_example_shape(x, ops[0].in_shape, "calibration data")   # a transposed array reshaped silently
    x = dequantize_input(x, input_scale, input_zp).reshape(x.shape[0], *ops[0].in_shape)
    lo = [np.inf] * len(ops)
    hi = [-np.inf] * len(ops)
    for i in range(0, x.shape[0], 256):
        _, outs = float_forward(ops, x[i:i + 256], collect=True)
        for k, y in enumerate(outs):
            if not np.isfinite(y).all():   # min/max would drop NaN and quantize a collapsed range
                raise EdgekwsError(f"layer {ops[k].name!r}: NaN or infinite float outputs on the calibration "
                                   "data (NaN/inf weights or BatchNorm statistics?); the model cannot be quantized")
            if percentile is None:
                lo[k], hi[k] = min(lo[k], float(y.min())), max(hi[k], float(y.max()))
            else:
                lo[k] = min(lo[k], float(np.percentile(y, 100 - percentile)))
                hi[k] = max(hi[k], float(np.percentile(y, percentile)))
    calib = {"examples": int(x.shape[0]), "method": "minmax" if percentile is None else f"percentile {percentile}"}
    return quantize_ops(ops, list(zip(lo, hi)), input_scale, input_zp, calib)


def load_float_model(bundle):
    """The bundle's float Sequential (weights.npz + architecture)."""
    from edgekws.evaluate import FloatNetwork

    return FloatNetwork(bundle).model


def calibration_features(bundle, data=None, seed: int = 0, limit: int = CALIB_MAX) -> np.ndarray:
    """int8 features (N, T, F) from the training split of DATA (default: the dataset the bundle
    was trained on), at most `limit`, drawn with `seed`. A .npy file of int8 features also works."""
    return calibration_examples(bundle, data, seed, limit)[0]


def calibration_examples(bundle, data=None, seed: int = 0, limit: int = CALIB_MAX) -> tuple[np.ndarray, np.ndarray]:
    """calibration_features and (N,) bool: which examples have a voice (not a `_silence_` cut; every
    example of a .npy file)."""
    from pathlib import Path

    if data is None:
        data = (bundle.manifest.get("training") or {}).get("dataset")
        if not data:
            raise EdgekwsError(f"{bundle.path}: no training dataset recorded; pass --calib DATA")
        if not Path(data).is_dir():
            raise EdgekwsError(f"{bundle.path}: its training dataset {data} (recorded in the bundle) is not "
                               "there any more; pass --calib DATA")
    path = Path(data)
    if path.suffix == ".npy" and path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EdgekwsError(f"--calib {path}: not a readable .npy array ({exc})") from None
        if feats.dtype != np.int8:
            raise EdgekwsError(f"--calib {path}: expected int8 features, got {feats.dtype}")
        want = tuple(bundle.manifest["architecture"]["input_shape"][:2])
        if feats.ndim != 3 or feats.shape[1:] != want:
            raise EdgekwsError(f"--calib {path}: expected features of shape (N, {want[0]}, {want[1]}) "
                               f"for this model, got {feats.shape}")
        if not len(feats):
            raise EdgekwsError(f"--calib {path}: holds 0 examples")
        voiced = np.ones(len(feats), bool)
    else:
        if problem := not_a_folder(path, "dataset folder"):
            raise EdgekwsError(f"--calib {path}: {problem} (or .npy of int8 features)")
        from edgekws.data import load_dataset
        from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
        from edgekws.features import FeatureConfig

        ds = load_dataset(path, bundle.labels[2:])
        cache = FeatureCache(default_cache_dir(path), FeatureConfig.from_dict(bundle.manifest["feature_config"]))
        arrays = split_arrays(ds, "train", cache, seed=seed)
        feats, voiced = arrays.features, ~np.asarray(arrays.is_silence, bool)
        if not len(feats):
            raise EdgekwsError(f"--calib {path}: its training split has no clips (the hash rule or "
                               "validation_list.txt / testing_list.txt put every clip elsewhere)")
    if len(feats) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(len(feats), limit, replace=False))
        feats, voiced = feats[pick], voiced[pick]
    return feats, voiced


def refuse_retrained(bundle, what: str = "quantize") -> None:
    """A retrained head learned from the base's int8 embeddings: re-quantizing its backbone would
    change them under it."""
    if bundle.manifest.get("head"):
        raise BundleError(f"{bundle.path}: has a retrained head, which learned from the base model's int8 "
                          f"backbone; {what} the base model, then retrain it")


def quantize_bundle(bundle, calib=None, *, seed: int = 0, percentile: float | None = None,
                    log=print, qat: dict | None = None, reference: bool = True) -> QuantModel:
    """Quantize a bundle in place: writes int8.npz and manifest["quantization"] (with `qat`, the
    fine-tuning's record, when given; with `reference`, the calibration examples' average embedding,
    voice_reference) in one manifest write. A voice_offset in the stream settings (in the old int8
    embedding's units) is removed. Outputs of an earlier int8 model (ONNX,
    C arrays, metrics, report, export projects inside the bundle) are removed first. Returns the model."""
    from edgekws.bundle import as_bundle
    from edgekws.features import FeatureConfig

    bundle = as_bundle(bundle)
    refuse_retrained(bundle)
    fc = FeatureConfig.from_dict(bundle.manifest["feature_config"])
    model = load_float_model(bundle)
    if isinstance(calib, np.ndarray):
        feats, voiced = calib, np.ones(len(calib), bool)
    else:
        feats, voiced = calibration_examples(bundle, calib, seed)
    qm = quantize_model(model, feats, fc.input_scale, fc.input_zero_point, percentile)
    qm.calibration["seed"] = seed
    meta = qm.meta() if qat is None else {**qm.meta(), "qat": qat}
    ref = voice_reference(qm, feats, voiced, "the calibration examples") if reference else None
    if ref is not None:
        meta["voice_reference"] = ref
    dropped = sorted({n.split("/")[0] + "/" if "/" in n else n for n in bundle.drop_outputs()} - {"int8.npz"})
    stream = bundle.manifest.get("stream")
    offset_gone = bool(stream) and stream.get("voice_offset") is not None
    extra = {"stream": {k: v for k, v in stream.items() if k != "voice_offset"}} if offset_gone else {}
    bundle.write_npz("int8.npz", qm.arrays(), quantization=meta, **extra)
    log(f"{bundle.path}: int8 model with {len(qm.layers)} layers, calibrated on {len(feats)} examples "
        f"({qm.calibration['method']}); wrote int8.npz"
        + (f"; removed the earlier model's {', '.join(dropped)} (export again)" if dropped else "")
        + ("; the stream thresholds were tuned on the earlier model: re-tune with edgekws eval-stream --tune"
           if bundle.manifest.get("stream") else "")
        + ("; its voice_offset is removed (it was in the earlier model's units: edgekws calibrate again)"
           if offset_gone else ""))
    return qm


def voice_reference(qm: QuantModel, feats: np.ndarray, voiced: np.ndarray, source: str) -> dict | None:
    """The average int8 embedding (the last dense layer's input) of the voiced examples, for voice
    normalization (edgekws/voicenorm.py, `edgekws calibrate --method norm`); None for a model whose
    last layer is not dense or examples without a voice."""
    if len(qm.layers) < 2 or qm.layers[-1].op != "dense" or not np.asarray(voiced).any():
        return None
    from edgekws.voicenorm import reference_record

    backbone = QuantModel(qm.layers[:-1], tuple(qm.input_shape), {})
    return reference_record(int8_forward(backbone, feats).reshape(len(feats), -1), voiced, source)


def load_quantized(bundle) -> QuantModel:
    """The bundle's QuantModel (int8.npz + manifest["quantization"])."""
    meta = bundle.manifest.get("quantization")
    if not meta or not bundle.has("int8.npz"):
        raise BundleError(f"{bundle.path}: not quantized yet (run: edgekws quantize {bundle.path})")
    return QuantModel.from_parts(meta, bundle.read_npz("int8.npz"), f"{bundle.path}/int8.npz")


class Int8Network:
    """The "int8" engine of edgekws eval/predict: the numpy integer reference."""

    def __init__(self, bundle):
        self.qm = load_quantized(bundle)

    @staticmethod
    def available(bundle) -> bool:
        return bundle.has("int8.npz") and bool(bundle.manifest.get("quantization"))

    def logits_int8(self, features: np.ndarray) -> np.ndarray:
        """features (N, T, F) int8 -> (N, K) int8."""
        return int8_forward(self.qm, features)

    def logits_features(self, features: np.ndarray) -> np.ndarray:
        """features (N, T, F) int8 -> (N, K) float32 dequantized logits."""
        return self.dequantize_logits(self.logits_int8(features))

    @property
    def output_scale(self) -> np.float32:
        """The int8 logits' scale (float32, as the firmware holds it)."""
        return np.float32(self.qm.output_scale)

    def dequantize_logits(self, q: np.ndarray) -> np.ndarray:
        """int8 logits -> float32 logits (output_scale * (q - output_zp))."""
        return (q.astype(np.float32) - np.float32(self.qm.output_zp)) * self.output_scale


class CNetwork(Int8Network):
    """The "c" engine (opt-in: `--engine c`): the C runtime of firmware/ through ctypes."""

    def __init__(self, bundle):
        from edgekws.export.c import model_blob
        from edgekws.export.cruntime import CModel

        super().__init__(bundle)
        self.cmodel = CModel(model_blob(self.qm))

    @staticmethod
    def available(bundle) -> bool:
        return False  # needs a C compiler: used only when asked for

    def logits_int8(self, features: np.ndarray) -> np.ndarray:
        check_example_shape(features, self.qm.input_shape, "C model")
        return self.cmodel.logits_int8(features)

    def voice_search(self, features: np.ndarray, max_shift: int,
                     rate_search: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The firmware's own search (ekws_model_invoke_search): dequantized logits, chosen shifts and
        rates (Q8)."""
        check_example_shape(features, self.qm.input_shape, "C model")
        q, shifts, rates = self.cmodel.search_int8(features, max_shift, rate_search)
        return self.dequantize_logits(q), shifts, rates

    def calibrate_shift(self, features: np.ndarray, max_shift: int) -> tuple[int, float]:
        """The firmware's own voice calibration (ekws_model_calibrate_shift): (shift, mean probability)."""
        check_example_shape(features, self.qm.input_shape, "C model")
        return self.cmodel.calibrate_shift(features, max_shift)


def _register_engine():
    from edgekws.evaluate import register_engine

    register_engine("int8", Int8Network)
    register_engine("c", CNetwork)


_register_engine()


def register(sub) -> None:
    p = sub.add_parser("quantize", help="int8 conversion of a trained model (post-training quantization, optional QAT)",
                       description="Fold BatchNorm, calibrate activation ranges on training data and write "
                                   "int8.npz + quantization parameters into the model bundle.")
    p.add_argument("model", help="model bundle folder")
    p.add_argument("--calib", metavar="DATA", help="dataset folder (its training split) or .npy of int8 "
                   "features (default: the dataset the model was trained on)")
    p.add_argument("--percentile", type=float, default=None,
                   help="clip activation ranges at this percentile instead of min/max (e.g. 99.99)")
    p.add_argument("--seed", type=cliargs.seed, default=0, help="seed of the calibration subset (default 0)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="first fine-tune N epochs with fake quantization (quantization-aware training, "
                        "on the training split of --calib DATA or the recorded dataset; rewrites weights.npz)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edgekws.bundle import Bundle

    check_percentile(args.percentile)   # before any work
    if args.qat_epochs:
        from edgekws.quant.qat import qat_bundle

        qat_bundle(Bundle.load(args.model), args.calib, epochs=args.qat_epochs, seed=args.seed,
                   percentile=args.percentile)
        return 0
    quantize_bundle(Bundle.load(args.model), args.calib, seed=args.seed, percentile=args.percentile)
    return 0
