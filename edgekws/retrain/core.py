"""Last-layer retraining of a model bundle: the frozen int8 backbone gives embeddings, a new head
is imprinted and trained (headmath.py in numpy, or head.c through ctypes), re-quantized to int8,
and written with the backbone into a new, normal model bundle.

    from edgekws.retrain import retrain
    bundle = retrain("models/ja", "my_english_clips", "models/en", shots=5, engine="c")

Lower level, for an application that keeps its examples in memory (a Pi):
    rb = Backbone.from_bundle(base)                 # int8 layers up to the pooled embedding
    emb = rb.embed(features_int8)                   # (N, E) int8, what the device computes
    head = fit_head(emb, labels, n_classes, rb.scale, rb.zero_point, epochs=30)
    write_retrained(base, out, labels_names, rb, head, ...)
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgekws.data import parse_words
from edgekws.errors import BundleError, EdgekwsError, is_int, is_real
from edgekws.fileio import check_outside
from edgekws.retrain.headmath import MAX_EXAMPLES, HeadConfig, HeadTrainer, QHead, quantize_head

ENGINES = ("numpy", "c")
MAX_COPIES = 32   # noisy copies of each example (--noisy-copies, eval-voices --enroll-noisy)
LOSSES = ("ce", "triplet")
HEAD_FILE = "head.bin"
DEFAULT_EPOCHS = 30
INITS = ("auto", "imprint", "base")
# Enrolling new recordings of the base model's own labels: the head starts from the base head
# (init "base") and moves gently (lr 0.01 instead of 0.05). Measured, 3 clips per word of voices never
# heard (the Flite/Festival judging set, per voice; Japanese eSpeak -> Open JTalk): RESULTS.md, Voices.
BASE_INIT_LR = 0.01
# _unknown_ clips when enrolling the base model's own words from every clip (no --shots): up to this
# many times a command's count, as in training, instead of one command's worth (the judging set:
# 84.1% -> 90.9% with imprinting). Not for new words: Japanese base -> English head at 5 examples per
# word, 15 unknown examples instead of 5 gave 65.9% instead of 71.7%.
RETRAIN_UNKNOWN_RATIO = 3.0
COPY_SNR_DB = (10.0, 30.0)   # noisy copies of enrollment clips (see noisy_copies)
SPEAKER_CLIPS = 10   # unlabeled clips of each example's speaker for --self-train without --voice-norm


# ---- the frozen backbone ---------------------------------------------------------------------

@dataclass
class Backbone:
    """The int8 layers of a QuantModel before its last (dense) layer; their output is the embedding.

    qm        : the full QuantModel (head included)
    layers    : the backbone's QLayers
    scale, zero_point : quantization of the int8 embedding
    """

    qm: object
    layers: list
    scale: float
    zero_point: int
    _cmodel: object = field(default=None, repr=False)

    @classmethod
    def from_quantized(cls, qm) -> "Backbone":
        head = qm.layers[-1]
        if head.op != "dense" or len(qm.layers) < 2:
            raise EdgekwsError(f"retrain: the model's last int8 layer {head.name!r} is a {head.op}, not a dense "
                               "head; last-layer retraining needs [backbone] -> embedding -> Dense")
        return cls(qm, list(qm.layers[:-1]), float(head.in_scale), int(head.in_zp))

    @classmethod
    def from_bundle(cls, bundle) -> "Backbone":
        """The int8 backbone of a quantized bundle (a Bundle or its path)."""
        from edgekws.bundle import as_bundle
        from edgekws.quant import load_quantized

        return cls.from_quantized(load_quantized(as_bundle(bundle)))

    @property
    def embed_size(self) -> int:
        return int(self.qm.layers[-1].in_shape[-1]) if len(self.qm.layers[-1].in_shape) == 1 else \
            int(np.prod(self.qm.layers[-1].in_shape))

    def quant_model(self):
        """The backbone alone as a QuantModel (its 'logits' are the int8 embedding)."""
        from edgekws.quant import QuantModel

        return QuantModel(self.layers, tuple(self.qm.input_shape), dict(self.qm.calibration))

    def embed(self, features: np.ndarray, engine: str = "numpy") -> np.ndarray:
        """features (N, T, F) int8 -> embeddings (N, E) int8, by the numpy integer reference or the
        C runtime (bit-identical; the C runtime is what the device runs)."""
        from edgekws.quant import int8_forward

        check_engine(engine)
        if engine == "numpy":   # (0, E) for no features: -1 cannot be inferred from an empty array
            return int8_forward(self.quant_model(), features).reshape(len(features), self.embed_size)
        if self._cmodel is None:
            from edgekws.export.c import model_blob
            from edgekws.export.cruntime import CModel

            self._cmodel = CModel(model_blob(self.quant_model()))
        from edgekws.quant.qmodel import check_example_shape

        check_example_shape(features, self.qm.input_shape, "C backbone")
        return self._cmodel.logits_int8(features).reshape(len(features), self.embed_size)


def check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise EdgekwsError(f"engine (--engine): {engine!r} is not one of {', '.join(ENGINES)}")


# ---- choosing examples -----------------------------------------------------------------------

def check_shots(shots) -> None:
    """--shots K: a positive integer (None, every clip, is the caller's)."""
    if not is_int(shots) or shots < 1:
        raise EdgekwsError(f"shots (--shots): must be a positive integer, got {shots!r}")


def pick_shots(labels: np.ndarray, shots: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most `shots` examples per class (all when None), drawn with `seed`, in the
    original order. labels (N,) int."""
    labels = np.asarray(labels)
    if shots is None:
        return np.arange(len(labels))
    check_shots(shots)
    rng = np.random.default_rng([seed, 31])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep.extend(idx if len(idx) <= shots else rng.choice(idx, shots, replace=False))
    return np.sort(np.array(keep, np.int64))


def dataset_examples(data, words, split: str = "all", seed: int = 0, cache_dir=None):
    """(features (N, T, F) int8, labels (N,), label names) of DATA's `split`, balanced with
    `_unknown_` and `_silence_` examples as training does. split "all" uses every clip (a person's
    own recordings share one speaker id, which the hash rule may put entirely in val or test)."""
    arrays, ds = _examples(data, words, split, seed, cache_dir)
    return arrays.features, arrays.labels, list(ds.labels)


def dataset_speakers(data, words, split: str = "all", seed: int = 0, cache_dir=None):
    """dataset_examples(...) and then (N,) speaker ids of the same clips ("" for `_silence_` cuts):
    what voice normalization (edgekws/voicenorm.py) groups by."""
    from edgekws.voicenorm import clip_speakers

    arrays, ds = _examples(data, words, split, seed, cache_dir)
    return arrays.features, arrays.labels, list(ds.labels), clip_speakers(arrays.clips)


def _examples(data, words, split: str, seed: int, cache_dir, unknown_ratio: float = 1.0):
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.features import FeatureConfig

    ds = load_dataset(data, words)
    if cache_dir is None:
        cache_dir = default_cache_dir(data)
    cache = FeatureCache(cache_dir or None, FeatureConfig())
    arrays = split_arrays(ds, split, cache, seed=seed, unknown_ratio=unknown_ratio)
    if not len(arrays.labels):
        raise EdgekwsError(f"{data}: no clips in split {split!r}")
    return arrays, ds


def check_copies(copies, snr_db) -> tuple[float, float]:
    """Checked --noisy-copies / --copy-snr values -> (low, high) dB."""
    if not is_int(copies, numpy=False) or not 0 <= copies <= MAX_COPIES:
        raise EdgekwsError(f"noisy (--noisy-copies): must be an integer in 0..{MAX_COPIES}, got {copies!r}")
    try:
        lo, hi = (float(v) for v in snr_db)
    except (TypeError, ValueError):
        raise EdgekwsError(f"noisy_snr (--copy-snr): must be LOW,HIGH in dB, got {snr_db!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and -20 <= lo <= hi <= 80):
        raise EdgekwsError(f"noisy_snr (--copy-snr): must be LOW,HIGH with -20 <= LOW <= HIGH <= 80 dB, got {lo:g},{hi:g}")
    return lo, hi


def noisy_copies(audio: np.ndarray, labels: np.ndarray, silence: np.ndarray, noises, copies: int,
                 snr_db=COPY_SNR_DB, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`copies` more examples for each given one, so that every class keeps its share: a word clip
    mixed with an excerpt of one of `noises` at an SNR drawn from snr_db, a `_silence_` example
    replaced by a fresh cut of the noises (edgekws.featcache.cut_silence); through the integer
    frontend.

    audio (N, S) int16, labels (N,), silence (N,) bool -> (features (copies * N, T, F) int8, labels)
    """
    from edgekws.augment import add_noise, sample_noise
    from edgekws.featcache import cut_silence, float_to_int16
    from edgekws.features import FeatureConfig, compute_features

    lo, hi = check_copies(copies, snr_db)
    silence = np.asarray(silence, bool)
    words, quiet = np.flatnonzero(~silence), np.flatnonzero(silence)
    fc = FeatureConfig()
    n, s = audio.shape
    if not copies or not n:
        return np.zeros((0, fc.num_frames(s), fc.num_bands), np.int8), np.zeros(0, labels.dtype)
    rng = np.random.default_rng([seed, 0xC0B1E5])
    x = audio[words].astype(np.float32) / np.float32(32768.0)
    feats = []
    for _ in range(copies):
        y = np.empty((n, s), np.float32)
        y[words] = add_noise(x, sample_noise(noises, len(words), s, rng), rng.uniform(lo, hi, len(words)))
        y[quiet] = cut_silence(noises, len(quiet), s, rng)
        feats.append(compute_features(float_to_int16(np.clip(y, -1.0, 1.0)), fc))
    return np.concatenate(feats), np.tile(labels, copies)


# ---- training the head -----------------------------------------------------------------------

@dataclass
class HeadResult:
    """A trained head: float32 weight (C, E), bias (C,), the int8 QHead, the loss per epoch."""

    weight: np.ndarray
    bias: np.ndarray
    qhead: QHead
    losses: list
    engine: str
    loss: str
    config: HeadConfig
    seconds: float


def base_rows(base_weight, base_bias, base_labels, labels, embed_size):
    """Initial (C, E) weights and (C,) bias: rows of the previous head for labels it had (used for
    classes without examples, e.g. `_unknown_` when DATA has no other words), zeros otherwise."""
    w = np.zeros((len(labels), embed_size), np.float32)
    b = np.zeros(len(labels), np.float32)
    if base_weight is not None:
        pos = {lab: i for i, lab in enumerate(base_labels)}
        for c, lab in enumerate(labels):
            if lab in pos and base_weight.shape[1] == embed_size:
                w[c], b[c] = base_weight[pos[lab]], base_bias[pos[lab]]
    return w, b


def fit_head(emb: np.ndarray, labels: np.ndarray, n_classes: int, emb_scale: float, emb_zp: int, *,
             epochs: int = DEFAULT_EPOCHS, engine: str = "numpy", loss: str = "ce", seed: int = 0,
             init: tuple | None = None, keep_rows: bool = False, log=None, **hyper) -> HeadResult:
    """Imprint and train a head on int8 embeddings.

    emb    : (N, E) int8 backbone outputs; labels (N,) int in [0, n_classes)
    engine : "numpy" (headmath.HeadTrainer) or "c" (firmware head.c via ctypes): same bits
    loss   : "ce" = imprinting + softmax cross-entropy SGD; "triplet" = a triplet-loss metric
             (triplet.py, numpy engine) then imprinting in it, folded into one dense layer, then CE
    The trainer standardizes the embeddings (per-dimension mean and 1/std, folded back into the
    returned weight/bias, which act on the plain dequantized embedding).
    init   : (weight (C, E), bias (C,)) for classes without examples
    keep_rows : start from `init` for every class (standardize only, no imprinting): new clips of
             the labels the model already knows (a user enrolling their voice)
    hyper  : HeadConfig fields (lr, momentum, weight_decay, batch, imprint_scale)
    """
    check_engine(engine)
    if loss not in LOSSES:
        raise EdgekwsError(f"loss (--loss): {loss!r} is not one of {', '.join(LOSSES)}")
    if loss == "triplet" and engine == "c":
        raise EdgekwsError("--loss triplet runs in the numpy engine only (use --engine numpy)")
    if not is_int(epochs, numpy=False) or epochs < 0:
        raise EdgekwsError(f"epochs (--epochs): must be an integer >= 0, got {epochs!r}")
    emb = np.ascontiguousarray(emb)
    labels = np.asarray(labels, np.int64)
    if emb.dtype != np.int8 or emb.ndim != 2 or len(emb) != len(labels) or not len(emb):
        raise EdgekwsError(f"retrain: need N > 0 int8 embeddings (N, E) and N labels, got {emb.dtype} "
                           f"{emb.shape} and {len(labels)} labels")
    check_hyper(hyper)
    cfg = HeadConfig(n_classes, emb.shape[1], max_examples=len(emb), seed=(seed & 0xFFFFFFFF) or 1, **hyper)
    if engine == "c":
        from edgekws.retrain.chead import CHeadTrainer

        tr = CHeadTrainer(cfg, emb_scale, emb_zp)
    else:
        tr = HeadTrainer(cfg, emb_scale, emb_zp)
    t0 = time.perf_counter()
    tr.add(emb, labels)
    if init is not None:
        tr.set_weights(*init)
    if keep_rows:
        if init is None:
            raise EdgekwsError("retrain: keep_rows needs the initial weights (init)")
        tr.standardize()
    else:
        tr.imprint()
    if loss == "triplet":
        from edgekws.retrain.triplet import triplet_head

        w, b = triplet_head(tr.x(), labels, n_classes, cfg, tr.weight, tr.bias, seed=seed)
        tr.set_standardized_rows(w, b)
    losses = []
    for ep in range(epochs):
        losses.append(tr.train_epoch())
        if log is not None and (ep + 1) % 10 == 0:
            log(f"  head epoch {ep + 1}/{epochs}: loss {losses[-1]:.4f}")
    qhead = tr.quantize()
    secs = time.perf_counter() - t0
    weight, bias = tr.folded()
    return HeadResult(weight, bias, qhead, losses, engine, loss, cfg, secs)


def head_qlayer(template, qhead: QHead, n_classes: int):
    """The QLayer of a retrained head, from the base model's head layer `template`."""
    return dataclasses.replace(
        template, out_shape=(n_classes,), out_scale=float(qhead.output_scale), out_zp=int(qhead.output_zp),
        act_min=-128, act_max=127, multiplier=qhead.multiplier.astype(np.int32), shift=qhead.shift.astype(np.int32),
        weight=qhead.weight.astype(np.int8), bias=qhead.bias.astype(np.int32),
        weight_scale=qhead.weight_scale.astype(np.float64), folded=[])


def int8_logits(backbone: Backbone, qhead: QHead, emb: np.ndarray) -> np.ndarray:
    """int8 logits (N, C) of int8 embeddings through the retrained head (the rule of fixedpoint.py)."""
    from edgekws.quant.qmodel import layer_forward

    q = head_qlayer(backbone.qm.layers[-1], qhead, qhead.weight.shape[0])
    return layer_forward(q, np.ascontiguousarray(emb, np.int8))


# ---- the new bundle --------------------------------------------------------------------------

def write_retrained(base, out, labels: list[str], backbone: Backbone, head: HeadResult, *, float_head: bool = False,
                    info: dict | None = None, overwrite: bool = False, voice_reference: dict | None = None):
    """Write bundle `out`: the base backbone with the new head (weights.npz, int8.npz, head.bin,
    manifest with the new labels; `voice_reference`, the retraining clips' average embedding from
    edgekws.voicenorm.reference_record, in its quantization). eval, predict, export and listen read it
    like any bundle."""
    from edgekws.bundle import Bundle, as_bundle
    from edgekws.quant import QuantModel

    base = as_bundle(base)
    n_classes = len(labels)
    arch = copy.deepcopy(base.manifest["architecture"])
    last = arch["layers"][-1]
    if last.get("type") != "Dense":
        raise BundleError(f"{base.path}: the architecture's last layer is {last.get('type')!r}, not Dense")
    last["units"] = n_classes
    arch["n_classes"] = n_classes
    if "budget" in arch:
        from edgekws.models import arch_budget

        try:
            arch["budget"] = {k: v for k, v in arch_budget(arch).to_dict().items() if k != "rows"}
        except EdgekwsError:
            pass
    weights = base.read_npz("weights.npz")
    name = last["name"]
    for key in (f"{name}.weight", f"{name}.bias"):
        if key not in weights:
            raise BundleError(f"{base.path}: weights.npz has no {key}")
    weights[f"{name}.weight"] = head.weight.astype(weights[f"{name}.weight"].dtype)
    weights[f"{name}.bias"] = head.bias.astype(weights[f"{name}.bias"].dtype)
    qlayer = head_qlayer(backbone.qm.layers[-1], head.qhead, n_classes)
    calib = {**backbone.qm.calibration, "head": "retrained: output range of the training examples' logits"}
    qm = QuantModel(backbone.layers + [qlayer], tuple(backbone.qm.input_shape), calib)
    qm.check()
    training = {k: v for k, v in base.manifest.get("training", {}).items() if k != "environment"}
    retrain_info = {"base_model": str(base.path), "base_labels": base.labels, "engine": head.engine,
                    "loss": head.loss, "epochs": len(head.losses),
                    "final_loss": head.losses[-1] if head.losses else None,
                    "head_config": dataclasses.asdict(head.config), "float_head": bool(float_head),
                    "seconds": round(head.seconds, 3), **(info or {})}
    bundle = Bundle.create(out, labels=list(labels), feature_config=base.manifest["feature_config"],
                           architecture=arch, training={**training, "retrain": retrain_info}, overwrite=overwrite,
                           staged=True)
    bundle.write_npz("weights.npz", weights)
    bundle.write_npz("int8.npz", qm.arrays())
    bundle.write_bytes(HEAD_FILE, head.qhead.blob(with_float=float_head))
    bundle.write_json("history.json", [{"epoch": i + 1, "train_loss": float(v)} for i, v in enumerate(head.losses)])
    meta = qm.meta() if voice_reference is None else {**qm.meta(), "voice_reference": voice_reference}
    bundle.update(quantization=meta, head={"file": HEAD_FILE, "float32": bool(float_head),
                                                "num_classes": n_classes, "embed_size": int(head.weight.shape[1])})
    if base.manifest.get("stream"):
        bundle.update(stream=kept_stream_settings(base, labels))
    bundle.finish()
    return bundle


def kept_stream_settings(base, labels) -> dict:
    """The base bundle's detector settings for a retrained head: how often the model runs (chosen for
    the device, e.g. a slower MCU) and its smoothing stay; the thresholds, tuned for the base head's
    posteriors, go back to the default for every command (tune again: edgekws eval-stream --tune), and a
    calibrated voice_shift or voice_offset goes (the head learned the clips as they are)."""
    from edgekws.stream.detector import StreamConfig

    cfg = StreamConfig.from_bundle(base)
    cfg.thresholds = StreamConfig.default(labels).thresholds
    cfg.tuning = {"note": f"hop_every, smooth and refractory kept from {base.path}; thresholds are the "
                          "defaults, not tuned for this head"
                          + ("; its voice calibration is not kept (the head learned the clips as they are: "
                             "edgekws calibrate again)" if cfg.voice_shift or cfg.voice_offset is not None else "")}
    cfg.voice_shift, cfg.voice_offset = 0, None
    return cfg.to_dict()


def check_hyper(hyper: dict) -> None:
    """Head hyper-parameters are HeadConfig fields (lr, weight_decay, ...); anything else is a mistake."""
    allowed = [f.name for f in dataclasses.fields(HeadConfig)
               if f.name not in ("num_classes", "embed_size", "max_examples", "seed")]   # set from the data
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise EdgekwsError(f"retrain: unknown option(s) {unknown}; the head's are {', '.join(allowed)}")
    bad = {k: v for k, v in hyper.items() if not is_real(v) or (k == "batch" and not is_int(v))}
    if bad:
        raise EdgekwsError(f"retrain: head option(s) {bad} must be numbers (batch a whole one)")


def retrain(model, data, out, *, words=None, shots: int | None = None, epochs: int = DEFAULT_EPOCHS,
            engine: str = "numpy", loss: str = "ce", seed: int = 0, split: str = "all", float_head: bool = False,
            overwrite: bool = False, cache_dir=None, log=print, noisy: int = 0, noisy_snr=COPY_SNR_DB,
            init: str = "auto", voice_norm: int = 0, self_train: float = 0.0, **hyper):
    """Retrain the last layer of bundle `model` on dataset folder `data`; write bundle `out`.

    words  : command words (default: the base model's words)
    shots  : examples per class (None = every clip)
    split  : which clips of DATA to learn from; "all" (default) uses every clip
    noisy  : also learn from this many noisy copies of each picked example (noisy_copies), made with
             DATA's `_background_noise_` files (white, pink and brown noise if it has none) at noisy_snr dB
    init   : "imprint" (new words: class means), "base" (the base model's own labels, e.g. a user
             enrolling their voice: start from the base head, lr BASE_INIT_LR unless given), or "auto":
             "base" when every label is one of the base model's, else "imprint"
    Without `shots` and with init "base", `_unknown_` gets up to RETRAIN_UNKNOWN_RATIO x a command's count
    of DATA's other words (one command's count otherwise).
    voice_norm : N > 0 learns from voice-normalized embeddings (edgekws/voicenorm.py): each example
             moved by its speaker's offset, the average of up to N other clips of that speaker in the
             split (speaker_pool; no labels used) less the average over the examples and those clips,
             which the bundle stores as its voice reference; a device then hears each user through
             `edgekws calibrate --method norm` (RESULTS.md, Last-layer retraining, session 43: 5 examples
             per word 86.4 -> 89.0%)
    self_train : f in [1e-6, 1] learns a second head from the examples and the unlabeled clips of their
             speakers (up to voice_norm, else SPEAKER_CLIPS, of each; voice-normalized with voice_norm),
             labelled by the first head: of each class it predicts, the fraction f it is surest of, counted
             in parts per million as the firmware does (self_train_pick; RESULTS.md, Last-layer
             retraining, session 44)
    Returns the new Bundle.
    """
    from edgekws.bundle import as_bundle, check_bundle_folder
    from edgekws.quant import load_quantized

    check_engine(engine)
    check_hyper(hyper)
    if not is_int(seed) or seed < 0:
        raise EdgekwsError(f"seed (--seed): must be an integer >= 0, got {seed!r}")
    if shots is not None:
        check_shots(shots)   # before any work
    log = log or (lambda *a, **k: None)
    check_outside(out, data)
    base = as_bundle(model)
    if Path(out).resolve() == Path(base.path).resolve():
        raise EdgekwsError(f"out (--out) {out}: must differ from the base model folder")
    check_outside(out, base.path, "MODEL")
    check_bundle_folder(out, overwrite=overwrite)   # before the embeddings and the head's epochs
    backbone = Backbone.from_quantized(load_quantized(base))
    if isinstance(words, str):  # one word, or "yes,no" as the command line takes it
        words = parse_words(words)
    words = list(words) if words is not None else [w for w in base.labels if not w.startswith("_")]
    if not words or not all(isinstance(w, str) for w in words):
        raise EdgekwsError(f"words (--words): a list of command words (strings) is needed, got {words!r}")
    snr_lo, snr_hi = check_copies(noisy, noisy_snr)
    if not is_int(voice_norm) or voice_norm < 0:
        raise EdgekwsError(f"voice_norm (--voice-norm): 0 (off) or a number of clips >= 1, got {voice_norm!r}")
    if not is_real(self_train) or not (self_train == 0 or is_self_train_fraction(self_train)):
        raise EdgekwsError(f"self_train (--self-train): 0 (off) or a fraction in [0.000001, 1], got {self_train!r}")
    if (voice_norm or self_train) and noisy:
        raise EdgekwsError(f"--{'voice-norm' if voice_norm else 'self-train'} with --noisy-copies: not supported "
                           "together (choose one)")
    if init not in INITS:
        raise EdgekwsError(f"init (--init): {init!r} is not one of {', '.join(INITS)}")
    new_labels = [w for w in words if w not in base.labels]
    if init == "base" and new_labels:
        raise EdgekwsError(f"--init base: {', '.join(new_labels)} not among the base model's labels "
                           f"({', '.join(base.labels)}); new words need --init imprint")
    if init == "base" and loss == "triplet":
        raise EdgekwsError("--init base keeps the base head; --loss triplet learns a new one (use --init imprint)")
    if init == "auto":
        init = "imprint" if new_labels or loss == "triplet" else "base"
    if init == "base":
        hyper.setdefault("lr", BASE_INIT_LR)
    arrays, ds = _examples(data, words, split, seed, cache_dir,
                           unknown_ratio=RETRAIN_UNKNOWN_RATIO if shots is None and init == "base" else 1.0)
    names = list(ds.labels)
    keep = pick_shots(arrays.labels, shots, seed)
    total = len(keep) * (1 + noisy)
    if total > MAX_EXAMPLES:   # the head trainer's limit: say so before the embedding
        copies, fewer = (f" with {noisy} noisy copies each", " or fewer --noisy-copies") if noisy else ("", "")
        raise EdgekwsError(f"{data}: {total} examples{copies}; a head learns from at most {MAX_EXAMPLES}: "
                           f"take fewer with --shots K{fewer}")
    feats, labels = arrays.features[keep], arrays.labels[keep]
    counts = np.bincount(labels, minlength=len(names))
    log(f"{data}: {len(labels)} examples ({', '.join(f'{n} {c}' for n, c in zip(names, counts))})")
    short = [n for n, c in zip(names, counts) if shots is not None and c < shots and not n.startswith("_")]
    if short:   # asked for more than there are: say so, rather than train on fewer without a word
        log(f"note: --shots {shots}: fewer takes of {', '.join(short)} ({min(counts[names.index(n)] for n in short)} "
            "at least); all of them are used")
    if noisy:
        from edgekws.featcache import room_noises
        from edgekws.features import FeatureConfig

        noises = room_noises(ds.noise_files, FeatureConfig().sample_rate)
        more, more_labels = noisy_copies(arrays.audio[keep], labels, arrays.is_silence[keep], noises, noisy,
                                         (snr_lo, snr_hi), seed)
        feats, labels = np.concatenate([feats, more]), np.concatenate([labels, more_labels])
        source = f"{len(ds.noise_files)} noise file(s) of DATA" if ds.noise_files else "white/pink/brown noise"
        log(f"  + {len(more_labels)} noisy copies ({noisy} per clip, {source}, "
            f"{snr_lo:g} to {snr_hi:g} dB SNR)")
    from edgekws.voicenorm import clip_speakers, reference_record

    t0 = time.perf_counter()
    emb = backbone.embed(feats, engine)
    ref = pool_emb = None
    if voice_norm or self_train:
        speakers = clip_speakers(arrays.clips)
        pool = speaker_pool(speakers, keep, voice_norm or SPEAKER_CLIPS, seed)
        pool_emb = backbone.embed(arrays.features[pool], engine)
        n_spk = len(set(speakers[pool]))
        log(f"  {len(pool)} unlabeled clips of the examples' {n_spk} speakers (up to {voice_norm or SPEAKER_CLIPS} "
            "of each)")
        if voice_norm:
            emb, pool_emb, ref = voice_normalized(emb, speakers[keep], pool_emb, speakers[pool], seed)
            log("  voice-normalized: each example and clip moved by its speaker's offset (from those clips)")
    t_emb = time.perf_counter() - t0
    bw = base.read_npz("weights.npz")
    from edgekws.models import classifier_name

    name = classifier_name(base.manifest["architecture"])
    rows = base_rows(bw.get(f"{name}.weight"), bw.get(f"{name}.bias"), base.labels, names, emb.shape[1])
    empty = [n for n, c in zip(names, counts) if c == 0]
    if empty:
        log(f"note: no examples of {', '.join(empty)}; "
            f"{'their rows come from the base model' if any(n in base.labels for n in empty) else 'their rows stay 0'}")
    head = fit_head(emb, labels, len(names), backbone.scale, backbone.zero_point, epochs=epochs, engine=engine,
                    loss=loss, seed=seed, init=rows, keep_rows=init == "base", log=log, **hyper)
    pseudo = None
    if (voice_norm or self_train) and not len(pool_emb):
        log(f"  note: --{'self-train' if self_train else 'voice-norm'}: no clip of the examples' speakers is left "
            "unlabelled (every clip is an example)" + ("; one head learned" if self_train else "; offsets 0"))
    if self_train and len(pool_emb):
        head, pseudo = self_trained_head(backbone, head, emb, labels, pool_emb, self_train, len(names), epochs=epochs,
                                         engine=engine, loss=loss, seed=seed, init=rows, keep_rows=init == "base",
                                         log=log, **hyper)
        log(f"  self-training: {len(pseudo)} of the {len(pool_emb)} unlabeled clips with the first head's labels "
            f"({', '.join(f'{n} {c}' for n, c in zip(names, np.bincount(pseudo, minlength=len(names))))})")
    acc_f = float(np.mean(head_float_logits(head, emb, backbone).argmax(1) == labels))
    acc_q = float(np.mean(int8_logits(backbone, head.qhead, emb).argmax(1) == labels))
    info = {"dataset": str(data), "split": split, "shots": shots, "words": words, "seed": seed,
            "n_examples": int(len(labels)), "counts": {n: int(c) for n, c in zip(names, counts)},
            "noisy_copies": noisy, "noisy_snr_db": [snr_lo, snr_hi] if noisy else None, "init": init,
            "lr": hyper.get("lr", HeadConfig.lr),
            "train_accuracy_float_head": acc_f, "train_accuracy_int8_head": acc_q,
            "embedding_seconds": round(t_emb, 3), **({"voice_norm": int(voice_norm)} if voice_norm else {}),
            **({"self_train": float(self_train), "pseudo_labelled": int(len(pseudo))} if pseudo is not None else {})}
    voiced = ~np.asarray(arrays.is_silence[keep], bool)   # the picked clips, not their noisy copies
    if ref is None and voiced.any():
        ref = reference_record(emb[:len(keep)], voiced, "the retraining examples")
    bundle = write_retrained(base, out, names, backbone, head, float_head=float_head, info=info, overwrite=overwrite,
                             voice_reference=ref)
    log(f"{out}: head {len(names)} x {emb.shape[1]} retrained ({engine}, {loss}, {init}) on {len(labels)} examples"
        f"{f' + {len(pseudo)} self-labelled clips' if pseudo is not None else ''} "
        f"in {head.seconds:.2f} s; training accuracy {acc_q:.3f} int8 head, {acc_f:.3f} float32 head")
    if (base.manifest.get("stream") or {}).get("voice_shift") or \
            (base.manifest.get("stream") or {}).get("voice_offset") is not None:
        log(f"  note: {base.path}'s voice calibration is not kept (the head learned the clips as they are): "
            f"edgekws calibrate {out} CLIPS --save")
    return bundle


def speaker_pool(speakers: np.ndarray, keep: np.ndarray, per_speaker: int, seed: int) -> np.ndarray:
    """Indices of up to `per_speaker` clips (drawn with `seed`) of each speaker of the examples `keep`,
    none of them an example: what a device hears of its users besides their labelled examples."""
    rng = np.random.default_rng([seed, 0x5E1F])
    out = []
    for name in sorted(set(speakers[keep]) - {""}):
        rest = np.setdiff1d(np.flatnonzero(speakers == name), keep)
        out.append(np.sort(rng.choice(rest, min(per_speaker, len(rest)), replace=False)))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def voice_normalized(emb: np.ndarray, spk: np.ndarray, pool_emb: np.ndarray, pool_spk: np.ndarray,
                     seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The examples `emb` (speakers `spk`) and the pool's clips moved by their speaker's offset, the
    average of the speaker's pool clips less the reference: the average over the examples and the pool
    (their voiced clips), returned as the bundle's voice reference record. A speaker without pool clips
    gets 0; a `_silence_` example (no speaker) the offset of a speaker drawn with `seed`."""
    from edgekws.voicenorm import normalize, offset_of, reference_record

    both = np.concatenate([emb, pool_emb])
    record = reference_record(both, np.concatenate([spk, pool_spk]) != "", "the retraining examples' speakers")
    ref = np.array(record["values"])   # the stored (rounded) reference, as the device's calibration uses it
    names = sorted(set(spk) - {""})
    if not names:
        raise EdgekwsError("--voice-norm: no example has a speaker (only `_silence_` cuts)")
    off = {u: offset_of(pool_emb[pool_spk == u], ref) if (pool_spk == u).any() else np.zeros(emb.shape[1], np.int32)
           for u in names}
    rng = np.random.default_rng([seed, 0x5EA1])
    of_example = [off[u] if u else off[names[rng.integers(len(names))]] for u in spk]
    return (normalize(emb, np.stack(of_example)),
            normalize(pool_emb, np.stack([off[u] for u in pool_spk])) if len(pool_emb) else pool_emb, record)


def is_self_train_fraction(fraction) -> bool:
    """A self-training fraction the firmware can take: in (0, 1] and at least 1 part per million (NaN and
    the infinities are not)."""
    return is_real(fraction) and 0 < fraction <= 1 and round(fraction * 1e6) >= 1


def fraction_ppm(fraction: float) -> int:
    """The self-training fraction in parts per million, as the firmware takes it (1..10^6); EdgekwsError
    for anything else (NaN, the infinities, 0, under 0.5 ppm, over 1)."""
    if not is_self_train_fraction(fraction):
        raise EdgekwsError(f"self-training: the fraction must be in [0.000001, 1], got {fraction!r}")
    return int(round(float(fraction) * 1e6))


def self_train_pick(logits: np.ndarray, scale: float, fraction: float, engine: str = "numpy") -> np.ndarray:
    """Indices (sorted) of the unlabeled clips a head labels surely enough: of each class its int8
    `logits` (N, C; real = scale * (q - zero point)) predict, the `fraction` (in parts per million,
    rounded up: ceil(ppm x count / 10^6)) with the largest softmax probability of that class (float32,
    headmath.surety_sums; ties: the earlier clip). engine "c": the firmware's ekws_head_self_train_pick,
    the same indices."""
    from edgekws.retrain.headmath import surety_sums

    q = np.asarray(logits)
    ppm = fraction_ppm(fraction)
    if engine == "c":
        from edgekws.retrain.chead import self_train_pick as c_pick

        return c_pick(q, scale, ppm)
    if not len(q):
        return np.zeros(0, np.int64)
    spread = surety_sums(q, scale)   # 1 / the top class's probability
    pred = q.argmax(1)
    out = []
    for c in np.unique(pred):
        m = np.flatnonzero(pred == c)
        out.append(m[np.argsort(spread[m], kind="stable")][:(ppm * len(m) + 999_999) // 1_000_000])
    return np.sort(np.concatenate(out))


def self_trained_head(backbone: Backbone, head: HeadResult, emb: np.ndarray, labels: np.ndarray,
                      pool_emb: np.ndarray, fraction: float, n_classes: int, **fit) -> tuple[HeadResult, np.ndarray]:
    """--self-train: the unlabeled clips `pool_emb` labelled by `head` (its int8 logits), the `fraction`
    of each predicted class it is surest of (self_train_pick) joining the examples (`emb`, `labels`) for
    a second fit_head(**fit). Returns (the second head, the labels of the clips it kept)."""
    first = int8_logits(backbone, head.qhead, pool_emb)
    pick = self_train_pick(first, head.qhead.output_scale, fraction, fit.get("engine", "numpy"))
    pseudo = first[pick].argmax(1)
    return fit_head(np.concatenate([emb, pool_emb[pick]]), np.concatenate([labels, pseudo]), n_classes,
                    backbone.scale, backbone.zero_point, **fit), pseudo


def head_float_logits(head: HeadResult, emb: np.ndarray, backbone: Backbone) -> np.ndarray:
    """float32 logits (N, C) of int8 embeddings through the float32 head."""
    from edgekws.retrain.headmath import dequantize, head_logits

    return head_logits(head.weight, head.bias, dequantize(emb, backbone.scale, backbone.zero_point))


class Int8FloatHeadNetwork:
    """The "int8-f32head" engine of eval/predict: int8 backbone + the float32 head of head.bin
    (targets with an FPU keep the retrained head in float32)."""

    def __init__(self, bundle):
        self.backbone = Backbone.from_bundle(bundle)
        info = bundle.manifest.get("head") or {}
        if not info.get("float32") or not bundle.has(HEAD_FILE):
            raise BundleError(f"{bundle.path}: has no float32 head (retrain with --float-head)")
        self.qhead = QHead.from_blob(bundle.read_bytes(HEAD_FILE), f"{bundle.path}/{HEAD_FILE}")

    @staticmethod
    def available(bundle) -> bool:
        return bool((bundle.manifest.get("head") or {}).get("float32")) and bundle.has(HEAD_FILE)

    def logits_features(self, features: np.ndarray) -> np.ndarray:
        from edgekws.retrain.headmath import dequantize, head_logits

        emb = self.backbone.embed(features)
        return head_logits(self.qhead.fweight, self.qhead.fbias,
                           dequantize(emb, self.qhead.input_scale, self.qhead.input_zp))
