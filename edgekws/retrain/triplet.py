"""The triplet-loss variant of last-layer retraining (`edgekws retrain --loss triplet`, numpy).

As in face-verification training, a metric is learned from (anchor, positive, negative) triplets:
here a linear map A (E x E, from the identity) of the frozen embeddings, with edgekws.nn's
TripletLoss (on L2-normalized A x, margin 0.2). The classes are then imprinted in that space
(normalized class means of the centred projections) and folded back into one dense layer,
W = W' A, so the device still runs a single int8 dense head. The CE epochs of fit_head follow.
"""

from __future__ import annotations

import numpy as np

from edgekws.nn.losses import TripletLoss

STEPS = 300
TRIPLETS = 64
LR = 0.1
MOMENTUM = 0.9
MARGIN = 0.2


def sample_triplets(labels: np.ndarray, n: int, rng: np.random.Generator):
    """n (anchor, positive, negative) index triples: positive of the anchor's class (another
    example when there is one), negative of another class. labels (N,) int."""
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    classes = [c for c in classes if len(c)]
    a, p, q = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    for i in range(n):
        ci = int(rng.integers(len(classes)))
        idx = classes[ci]
        a[i] = idx[rng.integers(len(idx))]
        others = idx[idx != a[i]]
        p[i] = others[rng.integers(len(others))] if len(others) else a[i]
        neg = classes[(ci + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
        q[i] = neg[rng.integers(len(neg))]
    return a, p, q


def learn_projection(x: np.ndarray, labels: np.ndarray, seed: int = 0, steps: int = STEPS) -> tuple[np.ndarray, list]:
    """x (N, E) float32 -> (A (E, E) float32, loss per step) by SGD with momentum on the triplet loss."""
    e = x.shape[1]
    rng = np.random.default_rng([seed, 57])
    A = np.eye(e, dtype=np.float32)
    vel = np.zeros_like(A)
    loss_fn = TripletLoss(MARGIN)
    scale = np.float32(1.0 / max(float(np.sqrt((x * x).sum(1)).mean()), 1e-6))
    xs = x * scale  # scale-free: the loss normalizes anyway, this keeps the gradient size sane
    history = []
    if len(np.unique(labels)) < 2:
        return A, history
    for _ in range(steps):
        ia, ip, iq = sample_triplets(labels, TRIPLETS, rng)
        xa, xp, xq = xs[ia], xs[ip], xs[iq]
        history.append(loss_fn.forward(xa @ A.T, xp @ A.T, xq @ A.T))
        da, dp, dq = loss_fn.backward()
        grad = da.T @ xa + dp.T @ xp + dq.T @ xq
        vel = np.float32(MOMENTUM) * vel + grad.astype(np.float32)
        A = A - np.float32(LR) * vel
    return A.astype(np.float32), history


def triplet_head(x: np.ndarray, labels: np.ndarray, n_classes: int, cfg, weight: np.ndarray, bias: np.ndarray,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (N, E) float32 examples in the trainer's (standardized) space -> the head imprinted in the
    triplet-learned space, folded to (weight (C, E), bias (C,)) in x's space.
    Rows of classes without examples keep `weight`/`bias`."""
    A, _ = learn_projection(x, np.asarray(labels), seed)
    z = x @ A.T
    mu = z.mean(0)
    d = z - mu
    r = float(np.sqrt((d * d).sum(1)).mean()) or 1.0
    w = np.array(weight, np.float32).copy()
    b = np.array(bias, np.float32).copy()
    for c in range(n_classes):
        sel = labels == c
        if not sel.any():
            continue
        m = d[sel].sum(0)
        norm = float(np.linalg.norm(m))
        wp = m * (cfg.imprint_scale / r / norm) if norm > 0 else np.zeros_like(m)
        w[c] = wp @ A
        b[c] = -float(wp @ mu)
    return w.astype(np.float32), b.astype(np.float32)
