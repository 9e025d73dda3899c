"""Losses: softmax cross-entropy (label smoothing, class weights) and the triplet loss on
L2-normalized embeddings. `forward` returns a Python float and caches what `backward` needs."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """logits (N, K) -> log-probabilities (N, K), stable (max subtracted), same dtype."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels.

    label_smoothing : eps in [0, 1): the target is (1 - eps) * one_hot + eps / K.
    class_weights   : (K,) or None. Example i weighs w[labels[i]]; the loss is the weighted mean
                      sum_i w_i * CE_i / sum_i w_i (PyTorch's convention for weighted means).
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights=None):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        if class_weights is not None:
            class_weights = np.asarray(class_weights, dtype=np.float64)
            if class_weights.ndim != 1 or np.any(class_weights < 0) or not np.all(np.isfinite(class_weights)):
                raise ValueError("SoftmaxCrossEntropy: class_weights must be a 1-D array of finite "
                                 f"values >= 0, got {class_weights!r}")
        self.class_weights = class_weights

    def forward(self, logits: np.ndarray, labels: np.ndarray, soft=None, soft_weight: float = 0.0) -> float:
        """logits (N, K) float, labels (N,) int in [0, K) -> mean loss (float).

        soft, soft_weight : a second target (N, K) of probabilities (a teacher's answer) and its weight
                            w in [0, 1]: the target is (1 - w) * the labels' (smoothed) + w * soft.
        """
        if logits.ndim != 2:
            raise ValueError(f"SoftmaxCrossEntropy: logits must be (N, K), got shape {logits.shape}")
        labels = np.asarray(labels)
        n, k = logits.shape
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"SoftmaxCrossEntropy: labels must be ({n},) integers, got {labels.dtype} {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"SoftmaxCrossEntropy: labels must be in [0, {k}), got range "
                             f"[{labels.min()}, {labels.max()}]")
        if self.class_weights is not None and self.class_weights.shape != (k,):
            raise ValueError(f"SoftmaxCrossEntropy: class_weights has {self.class_weights.shape[0]} "
                             f"entries for {k} classes")
        logp = log_softmax(logits)
        eps = self.label_smoothing
        target = np.full((n, k), eps / k, dtype=logits.dtype)
        target[np.arange(n), labels] += logits.dtype.type(1.0 - eps)
        if soft is not None:
            soft = np.asarray(soft)
            if soft.shape != (n, k) or not 0.0 <= float(soft_weight) <= 1.0:
                raise ValueError(f"SoftmaxCrossEntropy: soft must be ({n}, {k}) probabilities with a weight in "
                                 f"[0, 1], got {soft.shape} and {soft_weight!r}")
            w_soft = logits.dtype.type(soft_weight)
            target = (1 - w_soft) * target + w_soft * soft.astype(logits.dtype)
        w = (np.ones(n) if self.class_weights is None else self.class_weights[labels])
        wsum = w.sum()
        if wsum <= 0:
            raise ValueError("SoftmaxCrossEntropy: the labels in this batch all have class weight 0")
        per_example = -(target * logp).sum(axis=1)
        self._cache = (np.exp(logp), target, (w / wsum).astype(logits.dtype))
        return float(np.dot(w / wsum, per_example.astype(np.float64)))

    __call__ = forward

    def backward(self) -> np.ndarray:
        """-> dlogits (N, K), same dtype as the logits."""
        prob, target, w = self._cache
        return (prob - target) * w[:, None]


def consistency_to_mean(logits: np.ndarray, weight: float, target=None) -> tuple[float, np.ndarray]:
    """Agreement of two views of each example: logits (2N, K), rows i and N + i the same example.

    loss = weight / 2 * mean_i [KL(m_i || p_i) + KL(m_i || p_N+i)], p = softmax(logits), m the mean of
    the two views' probabilities held constant (a stop-gradient target; `target` (N, K) gives it
    explicitly). Returns (loss, dloss/dlogits (2N, K)): weight / (2N) * (p - m) for each view.
    """
    z = np.asarray(logits)
    if z.ndim != 2 or len(z) % 2:
        raise ValueError(f"consistency_to_mean: logits must be (2N, K), got shape {z.shape}")
    n = len(z) // 2
    logp = log_softmax(z.astype(np.float64))
    p = np.exp(logp)
    m = 0.5 * (p[:n] + p[n:]) if target is None else np.asarray(target, np.float64)
    mm = np.concatenate([m, m])
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(mm > 0, mm * (np.log(mm) - logp), 0.0).sum(axis=1)
    loss = float(weight) / 2 * float(kl.reshape(2, n).sum(axis=0).mean()) if n else 0.0
    grad = (float(weight) / (2 * max(n, 1))) * (p - mm)
    return loss, grad.astype(z.dtype)


def _l2_normalize(x, eps=1e-12):
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True)) + x.dtype.type(eps)
    return x / norm, norm


def _l2_normalize_backward(du, u, norm):
    """Gradient through u = x / |x|: dx = (du - u (u . du)) / |x|."""
    return (du - u * (u * du).sum(axis=1, keepdims=True)) / norm


class TripletLoss:
    """mean_i max(0, |a_i - p_i|^2 - |a_i - n_i|^2 + margin) on L2-normalized embeddings.

    The inputs are raw embeddings (N, D); normalization is part of the loss (and of its gradient).
    """

    def __init__(self, margin: float = 0.2):
        if not float(margin) >= 0:
            raise ValueError(f"TripletLoss: margin must be >= 0, got {margin!r}")
        self.margin = float(margin)

    def forward(self, anchor, positive, negative) -> float:
        """anchor, positive, negative: (N, D) float each -> mean hinge loss (float)."""
        if not (anchor.shape == positive.shape == negative.shape) or anchor.ndim != 2:
            raise ValueError("TripletLoss: anchor, positive and negative must share one (N, D) shape, got "
                             f"{anchor.shape}, {positive.shape}, {negative.shape}")
        (a, na), (p, np_), (q, nq) = (_l2_normalize(v) for v in (anchor, positive, negative))
        d_pos = ((a - p) ** 2).sum(axis=1)
        d_neg = ((a - q) ** 2).sum(axis=1)
        hinge = d_pos - d_neg + anchor.dtype.type(self.margin)
        active = (hinge > 0).astype(anchor.dtype)
        self._cache = (a, na, p, np_, q, nq, active)
        return float(np.maximum(hinge, 0).astype(np.float64).mean())

    __call__ = forward

    def backward(self):
        """-> (d_anchor, d_positive, d_negative), each (N, D)."""
        a, na, p, np_, q, nq, active = self._cache
        k = (2.0 / a.shape[0]) * active[:, None]
        k = k.astype(a.dtype)
        du_a = k * (q - p)        # d/da of |a-p|^2 - |a-q|^2 = 2(a-p) - 2(a-q)
        du_p = k * (p - a)
        du_q = k * (a - q)
        return (_l2_normalize_backward(du_a, a, na), _l2_normalize_backward(du_p, p, np_),
                _l2_normalize_backward(du_q, q, nq))
