"""Quantization-aware fine-tuning: `edgekws quantize MODEL --qat-epochs N [--calib DATA]`.

Method (BatchNorm folded, then fake quantization with a straight-through estimator):
  1. PTQ calibration of the bundle's float model fixes every op's int8 activation grid
     (scale, zero point, clamp) exactly as qmodel.quantize_ops would choose it.
  2. A float copy of the model is built from the folded ops (graph.fold_model): each Conv2D /
     DepthwiseConv2D / Dense carries its BatchNorm-folded weight and bias, followed by its ReLU /
     ReLU6 and a FakeQuant layer on that activation grid (average pools keep their input's grid;
     a pool's taps read the FakeQuant outputs of the ops they tap, and its FakeQuant covers them).
     Dropout is dropped; BatchNorm statistics stay frozen (they are inside the folded weights).
  3. Each step the folded weights are replaced in place by their per-channel symmetric int8
     fake-quantized values (quantize_weights, as PTQ does), forward and backward run on those,
     and the float weights are restored before the optimizer step: the straight-through
     estimator (per-channel max scaling never clips, so the weight gradient passes unchanged).
     FakeQuant passes dy where the input lies inside its grid's range and 0 where it clips.
     Biases are not fake-quantized (int32 at s_in * s_w is far finer than the int8 grids).
  4. The fine-tuned folded weights are unfolded back into the bundle's architecture (weights
     divided by the BatchNorm scale; the bias change goes into BatchNorm beta, so layers without
     a bias stay without one), weights.npz is rewritten atomically, and the normal PTQ export
     (quantize_bundle) runs on the new float weights: numpy / ONNX / C parity is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekws.errors import EdgekwsError, is_int, is_real
from edgekws.fileio import not_a_folder
from edgekws.nn.layer import Layer
from edgekws.nn.parallel import one_blas_thread

QAT_LR = 2e-4       # peak learning rate of the fine-tuning (cosine decay to 0)
QAT_BATCH = 32


class FakeQuant(Layer):
    """Per-tensor int8 fake quantization: x (N, ...) float -> same shape,
    y = (clip(round(x / scale) + zp, qmin, qmax) - zp) * scale.
    Backward (straight-through estimator): dx = dy where (qmin - zp) * scale <= x <= (qmax - zp) * scale, else 0.
    """

    def __init__(self, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127, name: str | None = None):
        super().__init__(name)
        self.scale, self.zero_point, self.qmin, self.qmax = float(scale), int(zero_point), int(qmin), int(qmax)

    def forward(self, x, training=False):
        lo = (self.qmin - self.zero_point) * self.scale
        hi = (self.qmax - self.zero_point) * self.scale
        self._mask = (x >= lo) & (x <= hi)
        q = np.clip(np.round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
        return ((q - self.zero_point) * self.scale).astype(x.dtype)

    def backward(self, dy):
        return dy * self._mask


def fake_quant_weights(w: np.ndarray, axis: int) -> np.ndarray:
    """w float -> same shape and dtype: per-channel symmetric int8 quantized, then dequantized."""
    from edgekws.quant.qmodel import quantize_weights

    q, scale = quantize_weights(w.astype(np.float64), axis)
    shape = [1] * w.ndim
    shape[axis] = -1
    return (q.astype(np.float64) * scale.reshape(shape)).astype(w.dtype)


def build_qat_model(model, ops, qm):
    """The folded float copy with FakeQuant layers: (Sequential, [(layer, out_channel_axis)])."""
    from edgekws.nn import Flatten, ReLU, ReLU6, Sequential, layer_from_config

    layers, compute, shape = [], [], tuple(model.input_shape)
    source = {}  # tappool op -> the FakeQuant layer whose output it pools
    for i, (fop, q) in enumerate(zip(ops, qm.layers)):
        if fop.op == "tappool":
            source[fop.name] = f"qat_fq_{next(o.name for o in reversed(ops[:i]) if o.op != 'tappool')}"
            continue
        cfg = model[fop.name].config()
        if fop.taps:
            cfg["taps"] = [source[t] for t in fop.taps]
        if fop.op != "avgpool":
            if fop.op == "dense" and len(shape) != 1:
                layers.append(Flatten(name=f"qat_flatten_{fop.name}"))
            cfg["use_bias"] = True  # the folded bias (zeros when there was neither bias nor BN)
        layer = layer_from_config(cfg)
        layers.append(layer)
        if fop.act:
            layers.append((ReLU if fop.act == "relu" else ReLU6)(name=f"qat_act_{fop.name}"))
        layers.append(FakeQuant(q.out_scale, q.out_zp, q.act_min, q.act_max, name=f"qat_fq_{fop.name}"))
        if fop.op != "avgpool":
            compute.append((layer, fop))
        shape = fop.out_shape
    qat = Sequential(layers, model.input_shape, rng=0, dtype=np.float32)
    for layer, fop in compute:
        layer.params["weight"][...] = fop.weight
        layer.params["bias"][...] = fop.bias
    return qat, [(layer, layer.out_channel_axis) for layer, _ in compute]


def unfold_into(model, qat, ops) -> None:
    """Write the fine-tuned folded weights of `qat` back into `model` (its own architecture)."""
    for fop in ops:
        if fop.op in ("avgpool", "tappool"):
            continue
        src, dst = qat[fop.name], model[fop.name]
        w = src.params["weight"].astype(np.float64)
        b = src.params["bias"].astype(np.float64)
        bns = [model[n] for n in fop.folded if type(model[n]).__name__ == "BatchNorm"]
        if not bns:
            dst.params["weight"][...] = w
            if "bias" in dst.params:
                dst.params["bias"][...] = b
            continue
        bn = bns[0]
        scale = bn.params["gamma"].astype(np.float64) / np.sqrt(bn.buffers["running_var"].astype(np.float64) + bn.eps)
        axis = dst.out_channel_axis
        shape = [1] * w.ndim
        shape[axis] = -1
        s = scale.reshape(shape)
        old_w = dst.params["weight"].astype(np.float64)
        dst.params["weight"][...] = np.where(s != 0, w / np.where(s != 0, s, 1.0), old_w)
        own_b = dst.params["bias"].astype(np.float64) if "bias" in dst.params else 0.0
        # folded bias = (own_b - mean) * scale + beta: keep own_b, move the change into beta
        bn.params["beta"][...] = b - (own_b - bn.buffers["running_mean"]) * scale


def qat_data(bundle, data, seed: int):
    """(features int8 (N, T, F), labels (N,)) of the training split of DATA (default: the bundle's dataset)."""
    from edgekws.data import load_dataset
    from edgekws.featcache import FeatureCache, default_cache_dir, split_arrays
    from edgekws.features import FeatureConfig

    if data is None or (Path(data).suffix == ".npy" and Path(data).is_file()):
        data = (bundle.manifest.get("training") or {}).get("dataset")
        if not data:
            raise EdgekwsError(f"{bundle.path}: --qat-epochs needs labelled training data; no dataset is "
                               "recorded in the bundle, pass --calib DATA (a dataset folder)")
    path = Path(data)
    if problem := not_a_folder(path, "dataset folder"):
        raise EdgekwsError(f"--qat-epochs: {path}: {problem}")
    ds = load_dataset(path, bundle.labels[2:])
    cache = FeatureCache(default_cache_dir(path), FeatureConfig.from_dict(bundle.manifest["feature_config"]))
    arrays = split_arrays(ds, "train", cache, seed=seed)
    if not len(arrays.labels):
        raise EdgekwsError(f"{path}: no training clips for quantization-aware training")
    return arrays.features, arrays.labels, str(path)


@one_blas_thread  # a multi-threaded BLAS sums the weight gradients in another order: other bits
def finetune(model, feats, labels, fc, qm_ptq, *, epochs: int, lr: float = QAT_LR, batch: int = QAT_BATCH,
             seed: int = 0, log=print) -> list[float]:
    """Fine-tune `model` (in place) with fake quantization on int8 features (N, T, F) and labels (N,).
    qm_ptq fixes the activation grids. Returns the mean training loss of each epoch."""
    from edgekws.nn import AdamW, SoftmaxCrossEntropy, clip_grad_norm, cosine
    from edgekws.quant.graph import fold_model
    from edgekws.train import dequantize

    ops = fold_model(model)
    qat, compute = build_qat_model(model, ops, qm_ptq)
    opt = AdamW(qat.parameters(), lr=lr, weight_decay=0.0)
    loss_fn = SoftmaxCrossEntropy()
    rng = np.random.default_rng([seed, 11])
    n = len(labels)
    steps = -(-n // batch)
    losses = []
    for epoch in range(epochs):
        perm, total = rng.permutation(n), 0.0
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            x = dequantize(feats[idx], fc).reshape(-1, *qat.input_shape)
            saved = [layer.params["weight"].copy() for layer, _ in compute]
            for layer, axis in compute:
                layer.params["weight"][...] = fake_quant_weights(layer.params["weight"], axis)
            logits = qat.forward(x, training=True)
            loss = loss_fn.forward(logits, labels[idx])
            qat.zero_grad()
            qat.backward(loss_fn.backward())
            for (layer, _), w in zip(compute, saved):  # straight-through: the step updates the float weights
                layer.params["weight"][...] = w
            clip_grad_norm(qat.parameters(), 5.0)
            opt.lr = cosine(epoch * steps + s, lr, epochs * steps)
            opt.step()
            total += loss * len(idx)
        losses.append(total / n)
        log(f"QAT epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    unfold_into(model, qat, ops)
    return losses


def qat_bundle(bundle, calib=None, *, epochs: int, lr: float = QAT_LR, batch: int = QAT_BATCH, seed: int = 0,
               percentile: float | None = None, log=print):
    """Quantization-aware fine-tuning of a bundle, then PTQ of the result (writes weights.npz,
    int8.npz and manifest["quantization"] with a "qat" entry). Returns the QuantModel."""
    from edgekws.bundle import as_bundle
    from edgekws.features import FeatureConfig
    from edgekws.quant import calibration_features, load_float_model, quantize_bundle, quantize_model, refuse_retrained

    if not is_int(epochs) or epochs < 1:
        raise EdgekwsError(f"--qat-epochs: must be a positive integer, got {epochs!r}")
    if not is_real(lr) or not 0 < lr < 1:
        raise EdgekwsError(f"QAT learning rate must be in (0, 1), got {lr!r}")
    if not is_int(batch) or batch < 1:
        raise EdgekwsError(f"QAT batch must be an integer >= 1, got {batch!r}")
    from edgekws.quant import check_percentile

    check_percentile(percentile)
    bundle = as_bundle(bundle)
    refuse_retrained(bundle, "fine-tune")
    fc = FeatureConfig.from_dict(bundle.manifest["feature_config"])
    feats, labels, data = qat_data(bundle, calib if not isinstance(calib, np.ndarray) else None, seed)
    calib_feats = calib if isinstance(calib, np.ndarray) else calibration_features(bundle, calib, seed)
    model = load_float_model(bundle)
    qm_ptq = quantize_model(model, calib_feats, fc.input_scale, fc.input_zero_point, percentile)
    log(f"{bundle.path}: quantization-aware fine-tuning on {len(labels)} clips of {data}, "
        f"{epochs} epoch(s), lr {lr:g}")
    losses = finetune(model, feats, labels, fc, qm_ptq, epochs=epochs, lr=lr, batch=batch, seed=seed, log=log)
    bundle.drop_outputs()   # the int8 model and everything made from it go before the float weights change
    bundle.write_npz("weights.npz", model.state_dict())
    qat = {"epochs": epochs, "lr": lr, "batch": batch, "seed": seed, "examples": int(len(labels)),
           "dataset": data, "loss": [round(float(v), 6) for v in losses],
           "method": "BatchNorm folded; per-channel int8 weights and calibrated per-tensor int8 "
                     "activations fake-quantized with a straight-through estimator"}
    return quantize_bundle(bundle, calib_feats, seed=seed, percentile=percentile, log=log, qat=qat)
