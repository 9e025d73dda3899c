"""Teachers for `edgekws train --teachers`: trained models whose mean answer joins the training target.

Trainings of one recipe with other seeds hear a voice they never met differently, and their mean
hears it better than any one of them (Japanese eSpeak NG -> Open JTalk: five trainings averaged 86.2%,
one 79.6% on average; RESULTS.md, Voices). A device runs one model, so a student learns the teachers'
mean instead ("knowledge distillation", Hinton et al. 2015): every augmented training example's target
is (1 - w) * its label (smoothed as usual) + w * the teachers' mean probability of that same input.

The teachers run in float on the batch the student sees, in inference mode. Their logits are taken as
balanced, as `edgekws train` writes its models (the `_unknown_` prior correction), and moved to this
training's sampling prior before the softmax: + log r on `_unknown_`, r = how many times as often as a
command the student draws it (`set_prior`), so that the student's own correction balances it again.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgekws.errors import BundleError, EdgekwsError

WEIGHTS = "weights.npz"


def check_paths(paths, out=None) -> None:
    """Refuse, before any feature is computed, a teacher that is no model bundle folder or is the
    training's own output folder `out`."""
    if not paths:
        raise EdgekwsError("--teachers: give at least one model bundle")
    for p in paths:
        path = Path(p)
        if out is not None and path.resolve() == Path(out).resolve():
            raise EdgekwsError(f"--teachers {p}: is the folder this training writes (--out); a teacher "
                               "is another, finished model")
        if not (path / "manifest.json").is_file():
            raise BundleError(f"--teachers {p}: not a model bundle (no manifest.json; give the folder "
                              "`edgekws train` wrote)")


class Teachers:
    """Float models of trained bundles with the student's labels and features (see the module doc)."""

    def __init__(self, models, bias, records):
        self.models = models      # edgekws.nn Sequential, one per teacher
        self.bias = bias          # (K,) float32 added to their logits: the student's sampling prior
        self.records = records    # [{"path", "weights.npz": sha256}], what the student's bundle records

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def load(cls, paths, labels, feature_config, out=None) -> "Teachers":
        """The bundles at `paths`, checked against the student's `labels` (the same, in order) and
        `feature_config` (a FeatureConfig); none of them may be the student's bundle folder `out`."""
        from edgekws.bundle import Bundle
        from edgekws.evaluate import FloatNetwork

        check_paths(paths, out)
        models, records = [], []
        for p in paths:
            path = Path(p)
            bundle = Bundle.load(path)
            if list(bundle.labels) != list(labels):
                raise EdgekwsError(f"--teachers {p}: its labels {', '.join(bundle.labels)} differ from the "
                                   f"data's {', '.join(labels)} (a teacher must know the same words, in "
                                   "the same order)")
            net = FloatNetwork(bundle)
            if net.feature_config != feature_config:
                raise EdgekwsError(f"--teachers {p}: its feature settings differ from this training's "
                                   f"({net.feature_config} against {feature_config})")
            models.append(net.model)
            records.append({"path": str(path.resolve()), WEIGHTS: bundle.manifest["files"][WEIGHTS]})
        return cls(models, np.zeros(len(labels), np.float32), records)

    def set_prior(self, unknown: int, ratio: float) -> None:
        """Answer at the student's sampling prior: `_unknown_` (index `unknown`) drawn `ratio` times as
        often as a command (train's EpochOrder.drawn_ratio; <= 0: none drawn, no shift)."""
        self.bias = np.zeros_like(self.bias)
        if ratio > 0:
            self.bias[unknown] = np.float32(math.log(ratio))

    def changed_since(self, recorded) -> str:
        """A sentence naming the teachers whose weights differ from the `recorded` list ("" if none)."""
        before = [(r.get("path"), r.get(WEIGHTS)) for r in recorded or []]
        now = [(r["path"], r[WEIGHTS]) for r in self.records]
        if before == now:
            return ""
        changed = [p for (p, d) in now if (p, d) not in before] or [p for p, _ in before]
        return f"the teachers changed since the checkpoint was written ({', '.join(map(str, changed))})"

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """The teachers' mean softmax probability (N, K) float32 for float model inputs x (N, ...)."""
        from edgekws.evaluate import softmax

        total = None
        for model in self.models:
            p = softmax(model.forward(x.reshape(-1, *model.input_shape), training=False) + self.bias)
            total = p if total is None else total + p
        return (total / np.float32(len(self.models))).astype(np.float32)
