"""Using a trained bundle: `load_model`, `edgekws eval MODEL DATA` and `edgekws predict MODEL FILE...`.

`load_model(bundle)` rebuilds the float network and returns a KeywordModel whose `predict(audio)`
runs the integer frontend and the network. Other engines plug in through `register_engine`: the
quantization module registers "int8" (a loader taking the Bundle and returning an object with
`logits_features(features int8 (N, T, F)) -> (N, K)`), and eval then reports both columns.

Voice search (`--voice-search K`, `KeywordModel(..., voice_search=K)`, `VoiceSearch`): each clip is
also heard with its band axis moved by up to K mel bands down and up (integer shifts of the int8
features, so every engine computes the same logits at each shift), and the answer is taken at the
shift where the model is surest of it (the largest class probability, `search_spread`). A voice that
sits higher or lower than the training voices is heard at the height the model knows; it costs K * 2
more inferences per clip (RESULTS.md, Voices: sessions 31-32). Rate search (`--rate-search L`, with or
without it) also hears each clip read faster and slower along time (`warp_time`, speaking rates 0.9
and 1/0.9, with L = 2 also 0.8 and 1.25): a voice that speaks at another pace than the training voices
(session 33); the search then runs over every rate × band shift, (2L + 1) * (2K + 1) inferences.

Metrics JSON (`eval --json FILE`, and metrics.json in the bundle under "float"/"int8"):
    {"accuracy": float, "n": int, "labels": [...],
     "per_class": {label: {"precision": float, "recall": float, "n": int}},
     "confusion": [[...]]}          confusion[true][predicted], rows and columns in label order
    plus "voice_search": K and/or "rate_search": L in the --json file when the figures are a search's
    (`--voice-search K`, `--rate-search L`; those are not recorded in the bundle), and "voice_norm": N,
    "voice_ref": DATA with voice normalization (`--voice-norm N`, edgekws/voicenorm.py)
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np

from edgekws import cliargs
from edgekws.errors import BundleError, EdgekwsError

# engine name -> loader(bundle) -> object with logits_features(features int8 (N, T, F)) -> (N, K)
ENGINES: dict = {}


def register_engine(name: str, loader) -> None:
    """Make `load_model(bundle, engine=name)` and `edgekws eval --engine name` use `loader`."""
    ENGINES[name] = loader


def _discover_engines() -> None:
    """Import the modules that register engines (int8 quantization; the float32 head of a
    retrained bundle, int8-f32head), if present."""
    for name in ("edgekws.quant", "edgekws.retrain"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise


class FloatNetwork:
    """The float network of a bundle (numpy engine)."""

    def __init__(self, bundle):
        from edgekws.models import layers_from_architecture
        from edgekws.nn import Sequential

        arch = bundle.manifest["architecture"]
        try:
            self.model = Sequential(layers_from_architecture(arch), arch["input_shape"], rng=0)
        except (KeyError, ValueError, TypeError) as exc:
            raise BundleError(f"{bundle.path}: cannot rebuild the architecture ({exc})") from None
        try:
            self.model.load_state_dict(bundle.read_npz("weights.npz"))
        except BundleError as exc:
            raise BundleError(f"{bundle.path / 'weights.npz'}: does not fit the manifest's architecture "
                              f"({exc})") from None
        from edgekws.features import FeatureConfig

        self.feature_config = FeatureConfig.from_dict(bundle.manifest["feature_config"])
        self.embedding_layer = arch.get("embedding")

    def _input(self, features: np.ndarray) -> np.ndarray:
        from edgekws.quant.qmodel import check_example_shape
        from edgekws.train import dequantize

        features = np.asarray(features)
        if features.dtype != np.int8:   # as the int8 engines: uint8 or dB values would be taken as int8 codes
            raise EdgekwsError(f"float model: features must be int8, got {features.dtype}")
        check_example_shape(features, self.model.input_shape, "float model")
        return dequantize(features, self.feature_config).reshape(-1, *self.model.input_shape)

    def logits_features(self, features: np.ndarray, batch: int = 256) -> np.ndarray:
        """features (N, T, F) int8 -> logits (N, K) float32."""
        x = self._input(features)
        out = [self.model.forward(x[i:i + batch]) for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.model.output_shape[-1]), np.float32)

    def embed_features(self, features: np.ndarray, batch: int = 256, layer: str | None = None) -> np.ndarray:
        """features (N, T, F) int8 -> embeddings (N, E): the output of the architecture's embedding layer
        (or of the named `layer`)."""
        from edgekws.train import predict_logits

        return predict_logits(self.model, self._input(features), batch, until=layer or self.embedding_layer)


register_engine("float", FloatNetwork)

MAX_VOICE_SEARCH = 8
# rate search's speaking rates, Q8 (256 = as spoken), in its order: 1, 0.9, 1/0.9, 0.8, 1.25
SEARCH_RATES_Q8 = (256, 230, 284, 205, 320)
MAX_RATE_SEARCH = (len(SEARCH_RATES_Q8) - 1) // 2


def shift_bands(features: np.ndarray, shift: int) -> np.ndarray:
    """Integer features (N, T, F) with the band axis moved by `shift` bands: band b reads band b + shift,
    the edge band repeated past the ends (shift > 0 moves the spectrum down: a lower voice, as
    training's `freq_shift_bands`). A copy of the same dtype; exact, so all engines agree."""
    features = np.asarray(features)
    f = features.shape[-1]
    src = np.clip(np.arange(f) + int(shift), 0, f - 1)
    return np.ascontiguousarray(features[..., src])


def warp_time(features: np.ndarray, rate_q8: int) -> np.ndarray:
    """Integer features (N, T, F) read along time at rate `rate_q8` / 256 around the middle frame:
    frame t reads position c + (t - c) * rate (c = (T - 1) / 2; rate < 1: the clip's middle heard
    slower, as a faster speaker's; the edge frames repeated past the ends), linear between the two
    frames around it with 9-bit weights, rounded half up, all in integers: exact, so all engines agree
    (the firmware's ekws_model_invoke_search computes the same bytes). A copy of the same dtype."""
    x = np.asarray(features)
    t = x.shape[-2]
    p = np.clip((t - 1) * 256 + (2 * np.arange(t) - (t - 1)) * int(rate_q8), 0, (t - 1) * 512)  # position * 512
    i0 = p >> 9
    i1 = np.minimum(i0 + 1, t - 1)
    f = (p & 511)[:, None]
    lo = x[..., i0, :].astype(np.int32) + 128   # 0..255: the integer division below is a floor
    hi = x[..., i1, :].astype(np.int32) + 128
    return (((lo * (512 - f) + hi * f + 256) >> 9) - 128).astype(x.dtype)


def _whole(v, top: int) -> bool:
    """v is a whole number (a Python or numpy integer, not a bool) in [0, top]."""
    return not isinstance(v, bool) and isinstance(v, (int, np.integer)) and 0 <= v <= top


def _clips3(features: np.ndarray, what: str) -> np.ndarray:
    """Features (N, T, F) of clips, (N, T, F, 1) taken as (N, T, F); other shapes refused, naming `what`."""
    f = np.asarray(features)
    if f.ndim == 4 and f.shape[-1] == 1:
        f = f[..., 0]
    if f.ndim != 3:
        raise EdgekwsError(f"{what}: features must be (N, T, F), got shape {f.shape}")
    return f


def search_order(max_shift: int) -> list[int]:
    """The shifts voice search tries, in its tie-breaking order: 0, -1, 1, -2, 2, ..."""
    return [0] + [s for k in range(1, int(max_shift) + 1) for s in (-k, k)]


def search_grid(max_shift: int, rate_search: int = 0) -> list[tuple[int, int]]:
    """The (rate Q8, band shift) pairs a search tries, in its tie-breaking order: every shift of
    `search_order` at rate 1, then at 0.9, 1/0.9 (and 0.8, 1.25 with rate_search 2)."""
    return [(r, s) for r in SEARCH_RATES_Q8[:1 + 2 * int(rate_search)] for s in search_order(max_shift)]


def search_name(bands: int, rates: int = 0) -> str:
    """How reports name a search: "voice search ±2", "rate search 1" or both, comma-separated."""
    return ", ".join(([f"voice search ±{bands}"] if bands else []) + ([f"rate search {rates}"] if rates else []))


def search_spread(logits: np.ndarray, scale=None) -> np.ndarray:
    """How unsure a model is of each answer: sum over classes of exp(logit - best logit), which is
    1 / (the largest class probability). logits (N, K). With `scale` they are int8 logits of that
    output scale, and the sum is computed as the firmware does (float32, classes in order,
    headmath.expf = ekws_expf of model.c), so the int8 engines choose the same shifts as C."""
    z = np.asarray(logits)
    if scale is None:
        z = z.astype(np.float64)
        return np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)
    from edgekws.retrain.headmath import expf

    d = (z.astype(np.int32) - z.max(axis=1, keepdims=True).astype(np.int32)).astype(np.float32)
    e = expf(np.float32(scale) * d)
    total = np.zeros(len(z), np.float32)
    for i in range(z.shape[1]):
        total = (total + e[:, i]).astype(np.float32)
    return total


class VoiceSearch:
    """An engine that hears each clip at band shifts -max_shift..max_shift (`shift_bands`), and with
    rate_search > 0 also at other speaking rates (`warp_time`), and answers where the model is surest
    of its answer, whichever class it is: the largest softmax probability (the smallest
    `search_spread`), as speech recognizers choose a speaker's frequency warp by the likelihood it
    gives (vocal tract length normalization). Ties go to the earlier pair of `search_grid` (the clip
    as it is first).

    engine      : any engine object (logits_features(features int8 (N, T, F)) -> (N, K))
    max_shift   : bands, 0..MAX_VOICE_SEARCH (`--voice-search`)
    rate_search : 0 (rate 1 only), 1 (also 0.9 and 1/0.9) or 2 (also 0.8 and 1.25) (`--rate-search`)
    """

    def __init__(self, engine, max_shift: int = 2, rate_search: int = 0):
        if not _whole(max_shift, MAX_VOICE_SEARCH):
            raise EdgekwsError(f"voice search (--voice-search): must be a whole number of bands in "
                               f"[0, {MAX_VOICE_SEARCH}], got {max_shift!r}")
        if not _whole(rate_search, MAX_RATE_SEARCH):
            raise EdgekwsError(f"rate search (--rate-search): must be a whole number of levels in "
                               f"[0, {MAX_RATE_SEARCH}], got {rate_search!r}")
        self.engine = engine
        self.max_shift = int(max_shift)
        self.rate_search = int(rate_search)

    def search(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """features (N, T, F) int8 -> (logits (N, K) where the model is surest, the chosen band shift (N,)
        int, the chosen rate (N,) int, Q8). (N, T, F, 1) is taken as (N, T, F); other shapes, and a
        search as wide as the band axis, are refused. An engine with its own `voice_search` (the C
        engine: the firmware's ekws_model_invoke_search) runs it. An int8 engine is scored on its int8
        logits, as the firmware does."""
        features = _clips3(features, "voice search")
        if self.max_shift >= features.shape[-1]:
            raise EdgekwsError(f"voice search: ±{self.max_shift} bands is as wide as the {features.shape[-1]} "
                               "bands of the features")
        native = getattr(self.engine, "voice_search", None)
        if callable(native):
            return native(features, self.max_shift, self.rate_search)
        exact = all(hasattr(self.engine, a) for a in ("output_scale", "logits_int8", "dequantize_logits"))
        scale = self.engine.output_scale if exact else None
        run = self.engine.logits_int8 if exact else self.engine.logits_features
        best_logits = best_spread = best_shift = best_rate = None
        warped = None
        for r, s in search_grid(self.max_shift, self.rate_search):
            if s == 0:   # the grid takes every shift of one rate in a row
                warped = features if r == 256 else warp_time(features, r)
            z = np.asarray(run(shift_bands(warped, s) if s else warped))
            spread = search_spread(z, scale)
            if best_logits is None:
                best_logits, best_spread = z.copy(), spread
                best_shift, best_rate = np.zeros(len(z), np.int64), np.full(len(z), 256, np.int64)
                continue
            better = spread < best_spread
            best_logits[better], best_spread[better] = z[better], spread[better]
            best_shift[better], best_rate[better] = s, r
        return ((self.engine.dequantize_logits(best_logits) if scale is not None else best_logits),
                best_shift, best_rate)

    def logits_features(self, features: np.ndarray) -> np.ndarray:
        return self.search(features)[0]


DEFAULT_CALIBRATE_SHIFT = 4   # bands `edgekws calibrate` tries each way (RESULTS.md, Voices: session 36)


def check_voice_shift(shift, what: str = "voice shift (--voice-shift)") -> int:
    """A whole number of bands in [-MAX_VOICE_SEARCH, MAX_VOICE_SEARCH], or a clear error."""
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or abs(int(shift)) > MAX_VOICE_SEARCH:
        raise EdgekwsError(f"{what}: must be a whole number of bands in [-{MAX_VOICE_SEARCH}, {MAX_VOICE_SEARCH}], "
                           f"got {shift!r}")
    return int(shift)


class VoiceShift:
    """An engine that hears every clip with its band axis moved by a fixed `shift` (shift_bands: band b
    reads band b + shift): the voice a `calibrate_shift` chose, one inference per clip. An int8 engine
    stays one (logits_int8 / output_scale / dequantize_logits): the same bits as C, whose streaming
    pipeline moves each frame the same way (ekws_pipeline_set_voice_shift)."""

    def __init__(self, engine, shift: int):
        self.engine = engine
        self.shift = check_voice_shift(shift)
        if all(hasattr(engine, a) for a in ("output_scale", "logits_int8", "dequantize_logits")):
            self.output_scale = engine.output_scale
            self.dequantize_logits = engine.dequantize_logits
            self.logits_int8 = lambda features: engine.logits_int8(self._moved(features))

    def _moved(self, features: np.ndarray) -> np.ndarray:
        f = _clips3(features, "voice shift")
        if abs(self.shift) >= f.shape[-1]:
            raise EdgekwsError(f"voice shift: {self.shift} bands is as wide as the {f.shape[-1]} bands of the features")
        return shift_bands(f, self.shift) if self.shift else f

    def logits_features(self, features: np.ndarray) -> np.ndarray:
        return self.engine.logits_features(self._moved(features))


def calibrate_shift(engine, features: np.ndarray, max_shift: int = DEFAULT_CALIBRATE_SHIFT) -> tuple[int, dict]:
    """Voice calibration: the band shift at which `engine` is surest of its answers to recordings of
    one voice (any words, no labels), as speech recognizers estimate a speaker's frequency warp from
    the likelihood it gives (vocal tract length normalization). For each shift of search_order(max_shift)
    the mean over the clips of the largest class probability, 1 / search_spread; the largest mean wins,
    the first in that order on ties. An int8 engine is scored as ekws_model_calibrate_shift scores it
    (float32 sum over the clips in order), so every engine, and the firmware, chooses the same shift.

    features (N, T, F) int8, N >= 1 -> (shift, {shift: mean largest probability})
    """
    f = _clips3(features, "voice shift")
    if not len(f):
        raise EdgekwsError("voice calibration: no clips")
    if not _whole(max_shift, MAX_VOICE_SEARCH):
        raise EdgekwsError(f"calibration range (--max-shift): must be a whole number of bands in "
                           f"[0, {MAX_VOICE_SEARCH}], got {max_shift!r}")
    if max_shift >= f.shape[-1]:
        raise EdgekwsError(f"calibration range (--max-shift): ±{max_shift} bands is as wide as the "
                           f"{f.shape[-1]} bands of the features")
    exact = all(hasattr(engine, a) for a in ("output_scale", "logits_int8", "dequantize_logits"))
    totals, scores = {}, {}
    for s in search_order(max_shift):
        moved = shift_bands(f, s) if s else f
        if exact:
            p = np.float32(1.0) / search_spread(engine.logits_int8(moved), engine.output_scale)
            total = np.float32(0.0)
            for v in p.astype(np.float32):       # in order, float32: the firmware's sum
                total = np.float32(total + v)
            totals[s], scores[s] = total, float(np.float32(total / np.float32(len(f))))
        else:
            totals[s] = float(np.sum(1.0 / search_spread(engine.logits_features(moved))))
            scores[s] = totals[s] / len(f)
    chosen = 0
    for s in totals:          # the largest sum, the first on ties (compared as sums, as C does)
        if totals[s] > totals[chosen]:
            chosen = s
    return chosen, scores


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class KeywordModel:
    """A bundle ready to classify 1 s clips.

    labels         : list of class names (index = class id)
    feature_config : the FeatureConfig of the bundle
    engine         : the network object (FloatNetwork, or what the int8 engine returns; wrapped
                     in VoiceSearch when voice_search > 0, and that in VoiceShift with a voice_shift)
    voice_search   : 0, or search each clip at band shifts up to this many bands (VoiceSearch)
    rate_search    : 0, or also at other speaking rates (1: 0.9 and 1/0.9; 2: also 0.8 and 1.25)
    voice_shift    : hear every clip moved by this many bands (VoiceShift, a voice `edgekws calibrate`
                     measured; the search then runs around it)
    """

    def __init__(self, bundle, engine: str = "float", voice_search: int = 0, rate_search: int = 0,
                 voice_shift: int = 0):
        from edgekws.features import FeatureConfig

        _discover_engines()
        if engine not in ENGINES:
            raise EdgekwsError(f"engine (--engine): unknown engine {engine!r} (available: {', '.join(ENGINES)})")
        from edgekws.bundle import as_bundle

        bundle = self.bundle = as_bundle(bundle)   # a folder path works as load_model's does
        self.labels = bundle.labels
        self.feature_config = FeatureConfig.from_dict(bundle.manifest["feature_config"])
        self.engine_name = engine
        self.engine = ENGINES[engine](bundle)
        self.voice_search, self.rate_search = voice_search, rate_search
        self.voice_shift = check_voice_shift(voice_shift or 0)
        if voice_search or rate_search:   # 0 / None: each clip as it is
            self.engine = VoiceSearch(self.engine, voice_search or 0, rate_search or 0)
        if self.voice_shift:              # the voice first, then the search around it
            self.engine = VoiceShift(self.engine, self.voice_shift)
        self.clip_samples = int(round(self.feature_config.sample_rate))  # 1 s windows

    def features(self, audio: np.ndarray) -> np.ndarray:
        """audio (S,) or (N, S) int16 (or float in [-1, 1]) -> (N, T, F) int8, each clip fitted to 1 s."""
        from edgekws.featcache import fit_length, float_to_int16
        from edgekws.features import compute_features

        a = np.asarray(audio)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise EdgekwsError(f"predict: audio must be (S,) or (N, S), got shape {a.shape}")
        if a.size == 0:
            raise EdgekwsError(f"predict: audio is empty (shape {a.shape})")
        if a.shape[1] <= 8 < a.shape[0]:  # what sounddevice and soundfile return for multichannel
            raise EdgekwsError(f"predict: audio of shape {a.shape} looks like (samples, channels); pass mono "
                               "(S,) audio, e.g. audio.mean(axis=1), or (N, S) clips")
        if a.dtype != np.int16:
            if not np.issubdtype(a.dtype, np.floating):
                raise EdgekwsError(f"predict: audio must be int16 or float samples, got {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise EdgekwsError("predict: float audio holds NaN or infinite samples")
            peak = float(np.max(np.abs(a)))
            if peak > 2.0:  # a little over 1 is a resampler's overshoot; 32767 is int16 data as float
                raise EdgekwsError(f"predict: float audio must be in [-1, 1], got samples up to {peak:g} "
                                   "(int16 values? pass them as int16, or divide by 32768)")
            a = float_to_int16(a)
        a = np.stack([fit_length(x, self.clip_samples) for x in a]) if a.shape[1] != self.clip_samples else a
        return compute_features(np.ascontiguousarray(a), self.feature_config)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """features (N, T, F) int8 -> class probabilities (N, K)."""
        return softmax(self.engine.logits_features(features).astype(np.float64))

    def predict(self, audio: np.ndarray) -> np.ndarray:
        """audio (S,) or (N, S) -> class probabilities (N, K)."""
        return self.predict_features(self.features(audio))

    def classify(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """audio (S,) or (N, S) -> [(label, confidence)] per clip."""
        p = self.predict(audio)
        return [(self.labels[i], float(p[k, i])) for k, i in enumerate(p.argmax(1))]


def load_model(bundle, engine: str = "float", voice_search: int = 0, rate_search: int = 0,
               voice_shift: int = 0) -> KeywordModel:
    """A KeywordModel from a Bundle or a bundle folder path (verified on load)."""
    from edgekws.bundle import as_bundle

    bundle = as_bundle(bundle)
    return KeywordModel(bundle, engine, voice_search, rate_search, voice_shift)


# ---- metrics ---------------------------------------------------------------------------------

def metrics(y_true: np.ndarray, y_pred: np.ndarray, labels) -> dict:
    """The eval JSON from integer labels (N,) and predictions (N,)."""
    k = len(labels)
    conf = np.zeros((k, k), np.int64)
    np.add.at(conf, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    per = {}
    for i, lab in enumerate(labels):
        tp, predicted, actual = conf[i, i], conf[:, i].sum(), conf[i].sum()
        per[lab] = {"precision": float(tp / predicted) if predicted else 0.0,
                    "recall": float(tp / actual) if actual else 0.0, "n": int(actual)}
    n = int(conf.sum())
    return {"accuracy": float(np.trace(conf) / n) if n else 0.0, "n": n, "labels": list(labels),
            "per_class": per, "confusion": conf.tolist()}


def format_metrics(m: dict, title: str = "") -> str:
    labels = m["labels"]
    w = max(10, *(len(lab) for lab in labels)) + 1
    lines = [f"{title}accuracy {m['accuracy']:.4f} on {m['n']} examples",
             f"{'label':<{w}}{'precision':>10}{'recall':>8}{'n':>6}"]
    lines += [f"{lab:<{w}}{m['per_class'][lab]['precision']:>10.3f}{m['per_class'][lab]['recall']:>8.3f}"
              f"{m['per_class'][lab]['n']:>6}" for lab in labels]
    short = [lab.strip("_")[:5] for lab in labels]
    lines.append("confusion (rows: true, columns: predicted)")
    lines.append(" " * w + "".join(f"{s:>6}" for s in short))
    lines += [f"{lab:<{w}}" + "".join(f"{v:>6}" for v in row) for lab, row in zip(labels, m["confusion"])]
    return "\n".join(lines)


def evaluate(bundle, data, split: str = "test", engines=None, seed: int = 0, cache_dir=None,
             voice_search: int = 0, rate_search: int = 0, voice_shift: int = 0, voice_norm: int = 0,
             voice_ref=None) -> dict:
    """Evaluate a bundle on a dataset split with each available engine.

    Returns {"split", "dataset", "float": metrics, "int8": metrics (if that engine exists), ...};
    with voice_search > 0 (VoiceSearch) also "voice_search": that number of bands, with rate_search > 0
    also "rate_search", with a voice_shift (VoiceShift) also "voice_shift". With voice_norm N > 0
    (edgekws/voicenorm.py) each clip's classifier input is moved by its speaker's offset, taken from
    up to N other clips of that speaker, from the average over voice_ref's train split (default: the
    reference `edgekws quantize` / `retrain` stored, for the int8 engine, else the dataset the bundle was
    trained or retrained on); also "voice_norm": N and "voice_ref": where the reference came from.
    """
    from edgekws.bundle import as_bundle
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays

    bundle = as_bundle(bundle)
    labels = bundle.labels
    ds = load_dataset(data, labels[2:])
    if tuple(ds.labels) != tuple(labels):
        raise EdgekwsError(f"{data}: dataset labels {list(ds.labels)} differ from the model's {labels}")
    _discover_engines()
    if isinstance(engines, str):   # "int8" or "float,int8", as --engine takes them
        engines = [e.strip() for e in engines.split(",") if e.strip()]
    names = list(engines) if engines else [e for e in ENGINES if e == "float" or _engine_ready(e, bundle)]
    if voice_norm and (voice_search or rate_search or voice_shift):
        raise EdgekwsError("voice normalization (--voice-norm) does not combine with --voice-search, "
                           "--rate-search or --voice-shift")
    if voice_norm and not engines:   # the engines it runs on, of those the bundle has
        names = [n for n in names if n in ("float", "int8")]
    models = {name: KeywordModel(bundle, name, voice_search, rate_search, voice_shift) for name in names}
    if voice_norm:
        from edgekws.voicenorm import SplitNetwork

        split_nets = {name: SplitNetwork(km.engine, name) for name, km in models.items()}
    fc = models[names[0]].feature_config
    cache = FeatureCache((default_cache_dir(data) if cache_dir is None else cache_dir) or None, fc)
    arrays = split_arrays(ds, split, cache, seed=seed)
    if not len(arrays.labels):
        raise EdgekwsError(f"{data}: no clips in split {split!r} (each speaker's clips fall in one split, so a "
                           "set of few speakers, such as one person's recordings or `synth --quick`, may have "
                           "none: use --split all, split='all' in Python)")
    out = {"split": split, "dataset": str(Path(data).resolve())}   # as typed, another folder's results merged
    if voice_search:
        out["voice_search"] = int(voice_search)
    if rate_search:
        out["rate_search"] = int(rate_search)
    if voice_shift:
        out["voice_shift"] = int(voice_shift)
    if voice_norm:
        out["voice_norm"] = int(voice_norm)
        from edgekws.voicenorm import stored_reference

        stored = stored_reference(bundle) if voice_ref is None else None   # what calibrate --method norm uses
        from_data = [n for n in split_nets if n != "int8" or stored is None]
        ref_data = voice_reference_data(bundle, voice_ref) if from_data else None
        bundle_ref = "the bundle's voice_reference (int8)"
        out["voice_ref"] = (str(ref_data) if stored is None else bundle_ref if not from_data
                            else f"{ref_data} ({', '.join(from_data)}); {bundle_ref}")
        return {**out, **_evaluate_voice_norm(split_nets, bundle, arrays, voice_norm, ref_data, fc, seed, stored)}
    for name, km in models.items():
        pred = km.engine.logits_features(arrays.features).argmax(1)
        out[name] = metrics(arrays.labels, pred, labels)
    return out


def voice_reference_data(bundle, voice_ref) -> Path:
    """The dataset whose train split gives the training voices' average embedding."""
    if voice_ref is not None:
        if not Path(voice_ref).is_dir():
            raise EdgekwsError(f"--voice-ref {voice_ref}: not a dataset folder")
        return Path(voice_ref)
    training = bundle.manifest.get("training") or {}
    given = (training.get("retrain") or {}).get("dataset") or training.get("dataset")
    if not given or not Path(given).is_dir():
        raise EdgekwsError(f"voice normalization: the training voices' average needs the model's training "
                           f"dataset, {'not found: ' + str(given) if given else 'not named in the bundle'}; "
                           f"pass it with --voice-ref DATA")
    return Path(given)


def _evaluate_voice_norm(split_nets: dict, bundle, arrays, clips: int, ref_data, fc, seed: int,
                         stored=None) -> dict:
    """evaluate()'s metrics per engine with voice normalization; the reference: `stored` (the bundle's,
    int8 units) for the int8 engine when given, else from ref_data's train split (features cached in
    its own DATA/.edgekws-cache)."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.voicenorm import clip_speakers, normalized, reference

    ref_arrays = None
    if ref_data is not None:
        ref_ds = load_dataset(ref_data, bundle.labels[2:])
        ref_arrays = split_arrays(ref_ds, "train", FeatureCache(default_cache_dir(ref_data), fc), seed=seed)
        if not len(ref_arrays.labels):
            raise EdgekwsError(f"{ref_data}: no clips in its train split for the training voices' average (--voice-ref)")
    out = {}
    for name, net in split_nets.items():
        if name == "int8" and stored is not None:
            ref = stored
        else:
            ref = reference(net.embed(ref_arrays.features), clip_speakers(ref_arrays.clips))
        emb = normalized(net.embed(arrays.features), clip_speakers(arrays.clips), ref, others=clips, seed=seed)
        out[name] = metrics(arrays.labels, net.classify(emb).argmax(1), bundle.labels)
    return out


def _engine_ready(name: str, bundle) -> bool:
    """An optional engine is used by default only when the bundle has what it needs."""
    probe = getattr(ENGINES[name], "available", None)
    return bool(probe(bundle)) if callable(probe) else False


# ---- command line ----------------------------------------------------------------------------

def register(sub) -> None:
    p = sub.add_parser("eval", help="accuracy, per-class precision/recall and confusion of a model",
                       description="Evaluate a model bundle on a dataset split (float, and int8 once "
                                   "the model is quantized). Results also go to MODEL/metrics.json.")
    p.add_argument("model", help="model bundle folder")
    p.add_argument("data", help="dataset folder (Speech Commands layout)")
    p.add_argument("--split", default="test", choices=["test", "val", "train", "all"], help="default: test")
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON ('-' = stdout)")
    p.add_argument("--engine", action="append", help="engine to evaluate, repeatable: float, int8, c (the firmware's C library, built on "
                        "first use), int8-f32head (a float32 retrained head); default: float, plus int8 once the "
                        "model is quantized and int8-f32head when it has a float32 head")
    p.add_argument("--cache", metavar="DIR", type=cliargs.folder, help="feature cache folder (default DATA/.edgekws-cache)")
    p.add_argument("--voice-search", type=cliargs.voice_search, default=0, metavar="K",
                   help="also hear each clip up to K mel bands lower and higher and answer at the height "
                        "where the model is surest (2K more inferences per clip; default 0 = off)")
    p.add_argument("--rate-search", type=cliargs.rate_search, default=0, metavar="L",
                   help="also hear each clip spoken slower and faster (1: rates 0.9 and 1/0.9; 2: also 0.8 "
                        "and 1.25) and answer where the model is surest; with --voice-search, every rate "
                        "at every band shift ((2L + 1) x (2K + 1) inferences per clip; default 0 = off)")
    p.add_argument("--voice-shift", type=cliargs.voice_shift, default=0, metavar="S",
                   help="hear every clip moved by S mel bands (S > 0: as a lower voice), the shift `edgekws "
                        "calibrate` measured for a voice (default 0)")
    p.add_argument("--voice-norm", type=cliargs.non_negative_int, default=0, metavar="N",
                   help="voice normalization: move each clip's embedding by how far its speaker's average, "
                        "taken from up to N of that speaker's other clips (no labels), lies from the training "
                        "voices' average (float and int8 engines; default 0 = off; 10 is what RESULTS.md measured)")
    p.add_argument("--voice-ref", metavar="DATA", help="with --voice-norm: the dataset whose train split gives the "
                   "training voices' average (default: for int8 the reference the bundle stores, for float the "
                   "dataset the bundle names as its training data)")
    p.set_defaults(func=run_eval)

    q = sub.add_parser("predict", help="label and confidence of each WAV file",
                       description="Classify each WAV file as one 1 s window (longer files are "
                                   "centre-cropped; use `edgekws listen` for streams).")
    q.add_argument("model", help="model bundle folder")
    q.add_argument("files", nargs="+", metavar="FILE", help="WAV file(s)")
    q.add_argument("--engine", default="float", help="engine (default float)")
    q.add_argument("--top", type=cliargs.positive_int, default=1, help="show the N most likely labels (default 1)")
    q.add_argument("--voice-search", type=cliargs.voice_search, default=0, metavar="K",
                   help="search band shifts up to K, as eval's --voice-search (default 0 = off)")
    q.add_argument("--rate-search", type=cliargs.rate_search, default=0, metavar="L",
                   help="search speaking rates, as eval's --rate-search (default 0 = off)")
    q.add_argument("--voice-shift", type=cliargs.voice_shift, default=0, metavar="S",
                   help="hear every file moved by S mel bands, as eval's --voice-shift (default 0)")
    q.set_defaults(func=run_predict)


def refuse_foreign_json(path, key: str) -> None:
    """An existing --json file is replaced only when it is an earlier result of the same kind (a JSON
    object with `key`): a rerun refreshes it, and nobody's notes.txt becomes metrics."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return
    try:
        old = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        old = None
    if not (isinstance(old, dict) and key in old):
        raise EdgekwsError(f"--json {path}: exists and is not an earlier result of this command; choose "
                           "another file or remove it")


_SETTINGS = ("voice_search", "rate_search", "voice_shift", "voice_norm", "voice_ref")   # evaluate()'s non-metrics keys


def run_eval(args) -> int:
    from edgekws.bundle import Bundle
    from edgekws.fileio import atomic_write_text, check_output_file

    if args.json and args.json != "-":
        check_output_file(args.json, "--json", ((args.data, "DATA"), (args.model, "MODEL")))
        refuse_foreign_json(args.json, "accuracy")
    bundle = Bundle.load(args.model)
    if args.voice_ref and not args.voice_norm:
        raise EdgekwsError("--voice-ref: only with --voice-norm N")
    result = evaluate(bundle, args.data, split=args.split, engines=args.engine, cache_dir=args.cache,
                      voice_search=args.voice_search, rate_search=args.rate_search, voice_shift=args.voice_shift,
                      voice_norm=args.voice_norm, voice_ref=args.voice_ref)
    engines = [k for k in result if k not in ("split", "dataset", *_SETTINGS)]
    searched = args.voice_search or args.rate_search or args.voice_shift or args.voice_norm
    from edgekws.fileio import OutputError

    kept = {}
    if searched:   # the bundle's metrics (report, export) stay the model's own, unsearched
        print("edgekws eval: note: search, voice-shift and voice-norm figures are not kept in the bundle's "
              "metrics.json", file=sys.stderr)
    elif bundle.has("metrics.json"):   # `eval --engine c` after `eval` adds its engine, keeps the others
        try:
            old = bundle.read_json("metrics.json")
        except (EdgekwsError, ValueError):   # an unreadable old file is simply replaced
            old = {}
        same = lambda r: (r.get("split"), str(Path(str(r.get("dataset"))).resolve()))  # noqa: E731
        if isinstance(old, dict) and same(old) == same(result):
            kept = {k: v for k, v in old.items() if k not in result}
    try:
        if not searched:
            bundle.write_json("metrics.json", {**result, **kept})
    except OutputError as exc:  # a read-only bundle (a shared or installed model) still evaluates
        print(f"edgekws eval: note: metrics not kept in the bundle: {exc}", file=sys.stderr)
    text = None
    if args.json:
        main = {**result["float" if "float" in result else engines[0]]}
        main.update({name: result[name] for name in engines if name != "float"})
        main.update({k: result[k] for k in _SETTINGS if k in result})
        text = json.dumps(main, indent=1) + "\n"
        if args.json != "-":
            atomic_write_text(Path(args.json), text)
    # the files are written before anything is printed: `eval … --json F | head -1` closes stdout
    # early, and the BrokenPipeError that ends the command must not take --json F with it
    tables = sys.stderr if args.json == "-" else sys.stdout   # `--json -`: stdout holds the JSON alone
    for name in engines:
        search = f", {search_name(args.voice_search, args.rate_search)}" if args.voice_search or args.rate_search else ""
        search += f", voice shift {args.voice_shift:+d}" if args.voice_shift else ""
        search += f", voice norm {args.voice_norm}" if args.voice_norm else ""
        print(format_metrics(result[name], title=f"{args.model} [{name}{search}] on {args.data} ({args.split}): "),
              file=tables)
    if args.json == "-":
        print(text, end="")
    return 0


def run_predict(args) -> int:
    from edgekws.audio import read_wav
    from edgekws.errors import AudioError

    km = load_model(args.model, engine=args.engine, voice_search=args.voice_search, rate_search=args.rate_search,
                    voice_shift=args.voice_shift)
    rate = km.feature_config.sample_rate
    status = 0
    for f in args.files:
        try:
            audio = read_wav(f, sr=rate, dtype="int16")
        except AudioError as exc:
            print(f"edgekws predict: error: {exc}", file=sys.stderr)  # the table on stdout stays parseable
            status = 2
            continue
        p = km.predict(audio)[0]
        top = np.argsort(-p, kind="stable")[:max(1, args.top)]
        print(f + "\t" + "\t".join(f"{km.labels[i]}\t{p[i]:.3f}" for i in top))
    return status
