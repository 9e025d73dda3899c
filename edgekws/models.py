"""The network architectures `edgekws train --arch` offers, and their device budget.

The default, "dscnn-l", is the five-layer depthwise-separable CNN of the project:

    (1) Conv2D 10x4 stride 2 "same", BN, ReLU          49x40x1  -> 25x20x48
    (2) depthwise 3x3 stride 2 + pointwise, BN, ReLU    25x20x48 -> 13x10x96
    (3) depthwise 3x3 + pointwise, BN, ReLU             13x10x96 -> 13x10x96
    (4) depthwise 3x3 + pointwise, BN, ReLU, global average pool -> 96
    (5) Dense -> classes

"dscnn" is the same with 64 channels in blocks 2-4 (the default until session 18: 2.63 M MACs
against 4.24 M, 1.5x fewer instructions on a Cortex-M, English 95.9% against 97.8% on unseen
speakers; RESULTS.md, Training).

The EMBEDDING that last-layer retraining learns from is the global average of block 4 followed by
that of block 3 (192 values; 128 for "dscnn"): the base model is trained on block 4's average alone
and written with the pool's tap on block 3 and zero classifier weights for it (`with_retrain_taps`),
so its logits are those of the plain model while a retrained head also hears block 3's finer detail
(Japanese -> English at 5 / 20 / all examples per word: +2 / +2 / +6 points over two base seeds of
"dscnn"; RESULTS.md). "dscnn-t" trains the classifier on both averages instead. A base trained with a
vocabulary (`train --vocab`) also gets a Dense "whiten" before its classifier (`with_whitening`),
and its output is then the embedding.

Every op is int8/C-friendly (conv, depthwise, pointwise, BN folded at export, ReLU, average pool,
dense). Alternatives, each with its own budget: "dscnn" (64-channel blocks: the lighter MCU choice),
"dscnn-w" (a 128-channel last block), "dscnn-t" (above), "dscnn-s" (narrow,
quick: demos and tests), "cnn" (plain convolutions), "dnn" (fully connected on 2x2-pooled features)
and "gru" (recurrent, BPTT).

The budget counts what the int8 device runs. BatchNorm folds into the preceding layer and ReLU,
Dropout and Flatten are free, so a budget row is one compute layer with whatever folds into it:
  weight bytes     int8 weights (1 byte each) + int32 bias (4 bytes per output channel; a
                   folded BatchNorm always yields one)
  MACs             multiply-accumulates per 1 s window (49 frames)
  activation bytes the layer's input and output buffers at int8, both live at once; the model's
                   activation memory is the largest of these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekws.errors import EdgekwsError
from edgekws.nn.activations import ReLU, ReLU6
from edgekws.nn.conv import Conv2D
from edgekws.nn.dense import Dense
from edgekws.nn.depthwise import DepthwiseConv2D
from edgekws.nn.layer import Layer, layer_from_config
from edgekws.nn.norm import BatchNorm
from edgekws.nn.pooling import AvgPool2D, GlobalAvgPool
from edgekws.nn.recurrent import GRU
from edgekws.nn.shape import Dropout, Flatten

# The budget of the default model with 12 classes (issue 5).
BUDGET = {"weight_bytes": 64 * 1024, "macs": 5_000_000, "activation_bytes": 32 * 1024}
DEFAULT_ARCH = "dscnn-l"
FEATURE_SHAPE = (49, 40)  # frames x bands for a 1 s window

# Layers that fold into the preceding compute layer or cost nothing on the device.
_FOLDED = (BatchNorm, ReLU, ReLU6, Dropout, Flatten)
# Layers the int8 pipeline and the C firmware support.
_INT8_OPS = (Conv2D, DepthwiseConv2D, Dense, AvgPool2D, GlobalAvgPool, *_FOLDED)


def _dscnn(n_classes: int, first: int, width: int, dropout: float, last: int | None = None,
           taps: tuple = ()) -> list[Layer]:
    """conv1 (first channels), three depthwise-separable blocks (width; the last block `last`, which is
    the embedding's size), global average pool (also over the `taps` layers' outputs), dropout, dense."""
    layers: list[Layer] = [Conv2D(first, (10, 4), stride=(2, 2), padding="same", use_bias=False,
                                  name="conv1"), BatchNorm(name="bn1"), ReLU(name="relu1")]
    for i, stride in ((2, 2), (3, 1), (4, 1)):
        layers += [DepthwiseConv2D(3, stride=stride, padding="same", use_bias=False, name=f"dw{i}"),
                   BatchNorm(name=f"bn{i}dw"), ReLU(name=f"relu{i}dw"),
                   Conv2D(last if i == 4 and last else width, 1, use_bias=False, name=f"pw{i}"),
                   BatchNorm(name=f"bn{i}pw"), ReLU(name=f"relu{i}pw")]
    layers += [GlobalAvgPool(name="embedding", taps=taps)]
    if dropout:
        layers += [Dropout(dropout, name="dropout")]
    return layers + [Dense(n_classes, name="classifier")]


def _cnn(n_classes: int) -> list[Layer]:
    return [Conv2D(16, (10, 4), stride=(2, 2), padding="same", use_bias=False, name="conv1"),
            BatchNorm(name="bn1"), ReLU(name="relu1"),
            Conv2D(32, 3, stride=2, padding="same", use_bias=False, name="conv2"),
            BatchNorm(name="bn2"), ReLU(name="relu2"),
            Conv2D(32, 3, padding="same", use_bias=False, name="conv3"),
            BatchNorm(name="bn3"), ReLU(name="relu3"),
            GlobalAvgPool(name="embedding"), Dense(n_classes, name="classifier")]


def _dnn(n_classes: int) -> list[Layer]:
    layers: list[Layer] = [AvgPool2D(2, padding="same", name="pool"), Flatten(name="flatten")]
    for i in (1, 2, 3):
        layers += [Dense(64, use_bias=False, name=f"fc{i}"), BatchNorm(name=f"bn{i}"), ReLU(name=f"relu{i}")]
    return layers + [Dense(n_classes, name="classifier")]


def _gru(n_classes: int) -> list[Layer]:
    # BatchNorm over the bands scales the dB inputs for the gates; it folds into the GRU's w_x, b_x.
    return [BatchNorm(name="bn_in"), GRU(64, clip=5.0, name="gru"), Dense(n_classes, name="classifier")]


@dataclass(frozen=True)
class ArchSpec:
    """A named architecture: how to build its layers, its input shape per example, and which
    layer's output is the embedding used by last-layer retraining."""

    name: str
    description: str
    input_shape: tuple[int, ...]
    embedding: str
    make: object  # callable(n_classes) -> list[Layer]
    retrain_taps: tuple = ()  # layers the trained model's embedding pool also averages (with_retrain_taps)


ARCHITECTURES: dict[str, ArchSpec] = {
    "dscnn": ArchSpec("dscnn", "depthwise-separable CNN, 48/64 channels (2.63 M MACs; the lighter MCU choice)",
                      (*FEATURE_SHAPE, 1), "embedding", lambda n: _dscnn(n, 48, 64, 0.1), ("relu3pw",)),
    "dscnn-w": ArchSpec("dscnn-w", "depthwise-separable CNN, 48/64 channels, 128 in the last block "
                        "(a 192-value embedding for retraining with block 3's tap)",
                        (*FEATURE_SHAPE, 1), "embedding", lambda n: _dscnn(n, 48, 64, 0.1, last=128), ("relu3pw",)),
    "dscnn-l": ArchSpec("dscnn-l", "depthwise-separable CNN, 48/96 channels (default; 4.24 M MACs; a "
                        "192-value embedding for retraining with block 3's tap)",
                        (*FEATURE_SHAPE, 1), "embedding", lambda n: _dscnn(n, 48, 96, 0.1), ("relu3pw",)),
    "dscnn-t": ArchSpec("dscnn-t", "depthwise-separable CNN, 48/64 channels, its classifier trained on the "
                        "pooled blocks 3 and 4 (the default trains on block 4 and only retraining uses block 3)",
                        (*FEATURE_SHAPE, 1), "embedding", lambda n: _dscnn(n, 48, 64, 0.1, taps=("relu3pw",))),
    "dscnn-s": ArchSpec("dscnn-s", "narrow depthwise-separable CNN, 16/24 channels (quick demos, tests)",
                        (*FEATURE_SHAPE, 1), "embedding", lambda n: _dscnn(n, 16, 24, 0.0)),
    "cnn": ArchSpec("cnn", "plain CNN: three standard convolutions 16/32/32",
                    (*FEATURE_SHAPE, 1), "embedding", _cnn),
    "dnn": ArchSpec("dnn", "fully connected 3x64 on 2x2-average-pooled features",
                    (*FEATURE_SHAPE, 1), "relu3", _dnn),
    "gru": ArchSpec("gru", "GRU with 64 units over the 49 frames (BPTT), not int8/C-exportable yet",
                    FEATURE_SHAPE, "gru", _gru),
}


def get_arch(name: str) -> ArchSpec:
    if name not in ARCHITECTURES:
        raise EdgekwsError(f"--arch: unknown architecture {name!r} (choose from {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def architecture_dict(name: str, n_classes: int) -> dict:
    """The JSON-able description stored in the bundle manifest; `layers_from_architecture`
    rebuilds the same (unbuilt) layers from it."""
    spec = get_arch(name)
    return {"name": spec.name, "input_shape": list(spec.input_shape), "n_classes": int(n_classes),
            "embedding": spec.embedding, "layers": [l.config() for l in spec.make(n_classes)]}


def with_retrain_taps(arch: dict, state: dict) -> tuple[dict, dict]:
    """A trained model of architecture `arch` (state: its arrays) -> the same model whose embedding
    pool also averages the architecture's retrain_taps layers, with zero classifier weights for
    those values: the logits do not change, and last-layer retraining gets the longer embedding.
    Unchanged when the architecture has no retrain taps (or its pool has taps already)."""
    import copy

    from edgekws.nn import Sequential

    spec = ARCHITECTURES.get(arch.get("name"))
    pool = next((c for c in arch["layers"] if c.get("name") == arch.get("embedding")), None)
    if spec is None or not spec.retrain_taps or pool is None or pool.get("type") != "GlobalAvgPool" \
            or pool.get("taps"):
        return arch, state
    new = copy.deepcopy(arch)
    next(c for c in new["layers"] if c.get("name") == arch["embedding"])["taps"] = list(spec.retrain_taps)
    model = Sequential(layers_from_architecture(new), new["input_shape"], rng=0)
    key = f"{classifier_name(new)}.weight"
    w = np.asarray(state[key])
    want = model[classifier_name(new)].params["weight"].shape
    grown = np.zeros(want, w.dtype)
    grown[:, :w.shape[1]] = w
    return new, {**state, key: grown}


# Within-class whitening of the retraining embedding (train --vocab): the vocabulary's words show
# which directions of the embedding vary between clips of one word (voice, rate, loudness); a
# Dense layer "whiten" scales those down before the classifier, so a head retrained from a few
# examples listens less to them. Japanese base -> English head, 5 draws, three base seeds (session
# 41): +1.4 / +1.0 / +1.3 points at 5 / 20 / all examples per word on the test's eSpeak NG voices,
# level on other engines' (RESULTS.md, Last-layer retraining).
WHITEN_LAYER = "whiten"
WHITEN_SHRINK = 0.1    # the covariance is shrunk this far toward its diagonal
WHITEN_FLOOR = 1e-3    # eigenvalues below this fraction of their mean are raised to it


def within_class_whitening(emb: np.ndarray, labels: np.ndarray, shrink: float = WHITEN_SHRINK,
                           floor: float = WHITEN_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """emb (N, E) float embeddings of clips of several words, labels (N,) their word ->
    (W (E, E), b (E,)): z = W x + b has zero mean over the clips and (about) unit covariance within a
    word. W = S^-1/2 of the within-word covariance S shrunk toward its diagonal; symmetric."""
    x = np.asarray(emb, np.float64)
    labels = np.asarray(labels)
    classes, idx = np.unique(labels, return_inverse=True)
    if x.ndim != 2 or len(x) != len(labels) or len(classes) < 2:
        raise EdgekwsError(f"whitening: need embeddings (N, E) of at least 2 words, got {x.shape} and "
                           f"{len(classes)} words")
    means = np.stack([x[idx == c].mean(0) for c in range(len(classes))])
    r = x - means[idx]
    sw = r.T @ r / len(x)
    if not np.trace(sw) > 1e-12 * max(float(np.mean(x * x)) * x.shape[1], 1e-300):   # rounding only
        raise EdgekwsError("whitening: the clips of each word are all alike (no variation within a word to learn)")
    s = (1 - shrink) * sw + shrink * np.diag(np.diag(sw))
    w, u = np.linalg.eigh(s)
    w = np.maximum(w, floor * max(float(w.mean()), 1e-12))
    wm = (u * w ** -0.5) @ u.T
    return wm, -wm @ x.mean(0)


def with_whitening(arch: dict, state: dict, weight: np.ndarray, bias: np.ndarray) -> tuple[dict, dict]:
    """A trained model (arch, state) -> the same with a Dense layer "whiten" (weight (E, E), bias (E,),
    within_class_whitening) before its classifier, which becomes the embedding, and the classifier
    re-expressed on it (w' = w W^-1, b' = b - w' b_w): the same logits, in exact arithmetic."""
    import copy

    if any(c.get("name") == WHITEN_LAYER for c in arch["layers"]):
        raise EdgekwsError(f"architecture {arch.get('name', '?')!r}: has a {WHITEN_LAYER!r} layer already")
    new = copy.deepcopy(arch)
    name = classifier_name(arch)
    e = int(weight.shape[0])
    new["layers"].insert(len(new["layers"]) - 1, Dense(e, name=WHITEN_LAYER).config())
    new["embedding"] = WHITEN_LAYER
    wc = np.asarray(state[f"{name}.weight"], np.float64)
    if wc.shape[1] != e or weight.shape != (e, e) or bias.shape != (e,):
        raise EdgekwsError(f"whitening: a {weight.shape} transform does not fit the classifier's {wc.shape[1]} "
                           "inputs")
    w2 = np.linalg.solve(np.asarray(weight, np.float64).T, wc.T).T      # w W^-1
    out = {**state, f"{WHITEN_LAYER}.weight": np.asarray(weight, np.float32),
           f"{WHITEN_LAYER}.bias": np.asarray(bias, np.float32), f"{name}.weight": w2.astype(np.float32)}
    if f"{name}.bias" in state:
        out[f"{name}.bias"] = (np.asarray(state[f"{name}.bias"], np.float64) - w2 @ bias).astype(np.float32)
    return new, out


def as_written(model, arch: dict):
    """A built model of architecture `arch` -> the model `edgekws train` would write from it (with
    its retrain taps, with_retrain_taps); `model` itself when the architecture has none."""
    from edgekws.nn import Sequential

    tapped, state = with_retrain_taps(arch, model.state_dict())
    if tapped is arch:
        return model
    out = Sequential(layers_from_architecture(tapped), tapped["input_shape"])
    out.load_state_dict(state)
    return out


def classifier_name(arch: dict) -> str:
    """Name of the last (Dense classifier) layer of an architecture dict: its weights are
    "<name>.weight" and "<name>.bias" in the state."""
    return arch["layers"][-1].get("name", "classifier")


def layers_from_architecture(arch: dict) -> list[Layer]:
    try:
        return [layer_from_config(c) for c in arch["layers"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgekwsError(f"architecture {arch.get('name', '?')!r}: cannot rebuild its layers ({exc})") from None


# ---- budget ----------------------------------------------------------------------------------

@dataclass
class BudgetRow:
    name: str           # compute layer name (+ folded layers in `folded`)
    op: str
    input_shape: tuple
    output_shape: tuple
    weight_bytes: int
    macs: int
    activation_bytes: int
    int8_ready: bool
    folded: tuple = ()


@dataclass
class Budget:
    rows: list[BudgetRow]

    @property
    def weight_bytes(self) -> int:
        return sum(r.weight_bytes for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def activation_bytes(self) -> int:
        return max((r.activation_bytes for r in self.rows), default=0)

    @property
    def int8_ready(self) -> bool:
        return all(r.int8_ready for r in self.rows)

    def fits(self, limits: dict = BUDGET) -> bool:
        return (self.weight_bytes <= limits["weight_bytes"] and self.macs <= limits["macs"]
                and self.activation_bytes <= limits["activation_bytes"])

    def to_dict(self) -> dict:
        return {"weight_bytes": self.weight_bytes, "macs": self.macs,
                "activation_bytes": self.activation_bytes, "int8_ready": self.int8_ready,
                "limits": dict(BUDGET), "fits": self.fits(),
                "rows": [{"name": r.name, "op": r.op, "input_shape": list(r.input_shape),
                          "output_shape": list(r.output_shape), "weight_bytes": r.weight_bytes,
                          "macs": r.macs, "activation_bytes": r.activation_bytes,
                          "int8_ready": r.int8_ready, "folded": list(r.folded)} for r in self.rows]}

    def table(self) -> str:
        """The per-layer budget as a text table (what `edgekws train` prints)."""
        head = f"{'layer':<12}{'op':<17}{'output':<13}{'weights B':>10}{'MACs':>11}{'act. B':>8}  int8/C"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            shape = "x".join(str(s) for s in r.output_shape)
            lines.append(f"{r.name:<12}{r.op:<17}{shape:<13}{r.weight_bytes:>10,}{r.macs:>11,}"
                         f"{r.activation_bytes:>8,}  {'yes' if r.int8_ready else 'no'}")
        lines.append("-" * len(head))
        lim = BUDGET
        lines.append(f"{'total':<42}{self.weight_bytes:>10,}{self.macs:>11,}{self.activation_bytes:>8,}"
                     f"  {'yes' if self.int8_ready else 'no'}")
        lines.append(f"{'budget':<42}{lim['weight_bytes']:>10,}{lim['macs']:>11,}{lim['activation_bytes']:>8,}"
                     f"  ({'fits' if self.fits() else 'OVER BUDGET'})")
        return "\n".join(lines)


def _weight_bytes(layer: Layer, bias_folded: bool) -> tuple[int, int]:
    """(int8 weight count, int32 bias count) of a built compute layer."""
    weights = sum(v.size for k, v in layer.params.items() if not k.startswith("b"))
    biases = sum(v.size for k, v in layer.params.items() if k.startswith("b"))
    if bias_folded and biases == 0:
        out_shape = layer.output_shape(layer.input_shape)
        biases = int(out_shape[-1])
    return int(weights), int(biases)


def budget_of(layers: list[Layer], input_shape) -> Budget:
    """Per-layer device budget of `layers` (unbuilt copies are built here with a throwaway seed)."""
    rng = np.random.default_rng(0)
    shape = tuple(int(s) for s in input_shape)
    rows: list[BudgetRow] = []
    shapes: dict[str, tuple] = {}
    for i, layer in enumerate(layers):
        cfg = layer.config()
        fresh = layer_from_config(cfg)
        if getattr(fresh, "taps", ()):
            fresh.tap_shapes = tuple(shapes[t] for t in fresh.taps)
        fresh.build(shape, rng)
        out = tuple(fresh.output_shape(shape))
        name = cfg.get("name") or f"{cfg['type'].lower()}{i}"
        shapes[name] = out
        if isinstance(fresh, _FOLDED) and not rows:
            pass  # an input normalization folds into the next layer's input weights
        elif isinstance(fresh, _FOLDED):
            rows[-1].output_shape = out  # Flatten reshapes; the others keep the shape
            rows[-1].folded += (name,)
        else:
            follows_bn = i + 1 < len(layers) and isinstance(layers[i + 1], BatchNorm)
            w, b = _weight_bytes(fresh, follows_bn)
            rows.append(BudgetRow(name=name, op=cfg["type"], input_shape=shape, output_shape=out,
                                  weight_bytes=w + 4 * b, macs=int(fresh.macs(shape)),
                                  activation_bytes=int(np.prod(shape)) + int(np.prod(out)),
                                  int8_ready=isinstance(fresh, _INT8_OPS)))
        shape = out
    return Budget(rows)


def arch_budget(name_or_arch, n_classes: int = 12) -> Budget:
    """Budget of a named architecture (or of an architecture dict from a manifest)."""
    arch = architecture_dict(name_or_arch, n_classes) if isinstance(name_or_arch, str) else name_or_arch
    return budget_of(layers_from_architecture(arch), arch["input_shape"])


def random_model(arch="dscnn-s", n_classes: int = 5, seed: int = 0):
    """A seeded, randomly initialised model whose BatchNorm layers have non-trivial statistics
    (gamma, beta, running mean and variance drawn with seed + 100), so that folding and int8
    conversion are exercised: the fixture of the quantization tests, goldens and benchmarks.
    arch: a name or an architecture dict (architecture_dict)."""
    from edgekws.nn import Sequential

    if isinstance(arch, dict):
        model = Sequential(layers_from_architecture(arch), arch["input_shape"], rng=seed)
    else:
        spec = get_arch(arch)
        model = Sequential(spec.make(n_classes), spec.input_shape, rng=seed)
    rng = np.random.default_rng(seed + 100)
    for layer in model.layers:
        if isinstance(layer, BatchNorm):
            c = layer.params["gamma"].shape[0]
            layer.params["gamma"][:] = rng.uniform(0.5, 1.5, c)
            layer.params["beta"][:] = rng.normal(0, 0.3, c)
            layer.buffers["running_mean"][:] = rng.normal(0, 0.5, c)
            layer.buffers["running_var"][:] = rng.uniform(0.5, 2.0, c)
    return model
