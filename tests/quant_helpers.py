"""Shared by the quantization/export tests: small seeded nn models with non-trivial BatchNorm
statistics and random int8 features."""

import contextlib

import numpy as np

from edgekws.bundle import Bundle
from edgekws.features import FeatureConfig
from edgekws.models import architecture_dict, layers_from_architecture, random_model

FC = FeatureConfig()


def make_model(arch="dscnn-s", n_classes=5, seed=0):
    return random_model(arch, n_classes, seed)


def tapped_arch(taps=("relu2pw", "relu3pw"), n_classes=5):
    """dscnn-s whose embedding also pools the outputs of `taps` (a multi-layer embedding)."""
    arch = architecture_dict("dscnn-s", n_classes)
    for cfg in arch["layers"]:
        if cfg["type"] == "GlobalAvgPool":
            cfg["taps"] = list(taps)
    return arch


def make_tapped_model(seed=0, taps=("relu2pw", "relu3pw"), n_classes=5):
    return random_model(tapped_arch(taps, n_classes), n_classes, seed)


def whitened(seed=0, n_classes=5):
    """(architecture dict, built model): the tapped dscnn-s with a within-class whitening layer before
    its classifier (train --vocab), fitted to the embeddings of random features in four made-up groups."""
    from edgekws.models import with_whitening, within_class_whitening
    from edgekws.nn import Sequential

    arch = tapped_arch(n_classes=n_classes)
    model = random_model(arch, n_classes, seed)
    x = (features(64, seed + 50).astype(np.float32) * FC.input_scale).reshape(64, *model.input_shape)
    emb = model.forward(x, until="embedding")
    new_arch, state = with_whitening(arch, model.state_dict(), *within_class_whitening(emb, np.arange(64) % 4))
    out = Sequential(layers_from_architecture(new_arch), new_arch["input_shape"])
    out.load_state_dict(state)
    return new_arch, out


def make_whitened_model(seed=0, n_classes=5):
    return whitened(seed, n_classes)[1]


def features(n, seed=1):
    return np.random.default_rng(seed).integers(-128, 128, (n, 49, 40)).astype(np.int8)


def make_bundle(path, arch="dscnn-s", n_classes=5, seed=0):
    """A float bundle written by hand (what `edgekws train` writes) around make_model()."""
    model = make_model(arch, n_classes, seed)
    labels = ["_silence_", "_unknown_"] + [f"w{i}" for i in range(n_classes - 2)]
    b = Bundle.create(path, labels=labels, feature_config=FC.to_dict(),
                      architecture=architecture_dict(arch, n_classes), training={"seed": seed})
    b.write_npz("weights.npz", model.state_dict())
    return b, model


@contextlib.contextmanager
def interrupted_when_writing(name):
    """Inside: a Ctrl-C (KeyboardInterrupt) just as a bundle is about to write file `name` (every
    Bundle.write_* goes through write_bytes)."""
    real = Bundle.write_bytes

    def write(self, n, data, **fields):
        if n == name:
            raise KeyboardInterrupt
        real(self, n, data, **fields)

    Bundle.write_bytes = write
    try:
        yield
    finally:
        Bundle.write_bytes = real
