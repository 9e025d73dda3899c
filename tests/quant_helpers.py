"""Shared by the quantization/export tests: small seeded nn models with non-trivial BatchNorm
statistics and random int8 features."""

import numpy as np

from edgekws.bundle import Bundle
from edgekws.features import FeatureConfig
from edgekws.models import ARCHITECTURES, architecture_dict
from edgekws.nn import BatchNorm, Sequential

FC = FeatureConfig()


def make_model(arch="dscnn-s", n_classes=5, seed=0):
    spec = ARCHITECTURES[arch]
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
