"""The numpy twin of firmware/src/head.c: last-layer training in float32, bit for bit.

Every float32 operation happens in the order head.c does it: reductions are explicit loops over
the reduced axis (never np.sum / matmul, whose summation order differs), elementwise steps are
vectorized over the axes that are independent. exp, log and sqrt are the fixed approximations of
head.c, not numpy's. The C test (firmware/tests/test_head.c) checks a golden file produced here.

    tr = HeadTrainer(HeadConfig(num_classes=12, embed_size=64), emb_scale, emb_zp)
    tr.add(embeddings_int8, labels); tr.imprint(); losses = [tr.train_epoch() for _ in range(30)]
    qhead = tr.quantize()            # QHead: int8 weights, int32 bias, multiplier, shift, ...
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from edgekws.errors import EdgekwsError, is_int
from edgekws.quant.fixedpoint import quantize_multiplier

F = np.float32
MAGIC = 0x48574B45  # "EKWH"
VERSION = 1
HEADER_SIZE = 48
FLAG_FLOAT = 1
MAX_CLASSES, MAX_EMBED, MAX_EXAMPLES = 255, 4096, 65535
SHIFT_MIN, SHIFT_MAX = 1, 62   # EKWS_SHIFT_MIN / _MAX of kernels.h: the requantization's right shifts
BIAS_LIMIT = F(2147483520.0)


# ---- float32 helpers (head.c: ekws_head_expf, head_logf, head_sqrtf, round_half_away) ----------

def expf(x: np.ndarray) -> np.ndarray:
    """exp of float32 x <= 0 (larger values are treated as 0), as ekws_expf (model.c; ekws_head_expf)."""
    x = np.minimum(np.asarray(x, F), F(0))
    k = np.trunc(x * F(1.44269504) - F(0.5)).astype(np.int32)
    k = np.maximum(k, -126)  # only reached below -87, where the result is 0 anyway
    kf = k.astype(F)
    r = (x - kf * F(0.693359375)) - kf * F(-2.12194440e-4)
    p = np.full_like(r, F(1.38888889e-3))
    for c in (8.33333333e-3, 4.16666667e-2, 1.66666667e-1, 0.5, 1.0, 1.0):
        p = p * r + F(c)
    two_k = ((k + 127).astype(np.uint32) << np.uint32(23)).view(F)
    return np.where(x < F(-87.0), F(0), p * two_k).astype(F)


def surety_sums(logits: np.ndarray, scale: float) -> np.ndarray:
    """(N,) float32: sum over j ascending of expf(scale * (q_j - q_max)) of int8 logits (N, C), added one
    class at a time as ekws_head_self_train_pick does (the top class's softmax probability is 1 / it)."""
    q = np.asarray(logits).astype(np.int32)
    d = (q - q.max(1, keepdims=True)).astype(F) * F(scale)
    s = np.zeros(len(q), F)
    for j in range(q.shape[1]):
        s = (s + expf(d[:, j])).astype(F)
    return s


def logf(x: np.ndarray) -> np.ndarray:
    """log of normal float32 x > 0, as head_logf."""
    x = np.asarray(x, F)
    u = x.view(np.uint32)
    e = ((u >> np.uint32(23)) & np.uint32(0xFF)).astype(np.int32) - 127
    m = ((u & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(F)
    big = m > F(1.41421356)
    m = np.where(big, m * F(0.5), m)
    e = e + big.astype(np.int32)
    s = (m - F(1)) / (m + F(1))
    s2 = s * s
    p = np.full_like(s, F(0.222222222))
    for c in (0.285714286, 0.4, 0.666666667, 2.0):
        p = p * s2 + F(c)
    return (e.astype(F) * F(0.693147181) + p * s).astype(F)


def sqrtf(x: np.ndarray) -> np.ndarray:
    """sqrt of float32 x (0 for x <= 0), as head_sqrtf: bit-level guess + 3 Newton steps."""
    x = np.asarray(x, F)
    pos = x > F(0)
    xs = np.where(pos, x, F(1))
    y = (np.uint32(0x1FBD1DF5) + (xs.view(np.uint32) >> np.uint32(1))).view(F)
    for _ in range(3):
        y = F(0.5) * (y + xs / y)
    return np.where(pos, y, F(0)).astype(F)


def round_half_away(v: np.ndarray) -> np.ndarray:
    """float32 v (|v| < 2^31) rounded half away from zero, as head.c."""
    v = np.asarray(v, F)
    r = np.trunc(v)
    return np.where(v - r >= F(0.5), r + F(1), np.where(r - v >= F(0.5), r - F(1), r)).astype(F)


def xorshift32(state: int) -> int:
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    state ^= (state << 5) & 0xFFFFFFFF
    return state


def dequantize(q: np.ndarray, scale, zp: int) -> np.ndarray:
    """int8 embeddings (..., E) -> float32 (q - zp) * scale, as head.c's dequant."""
    return (np.asarray(q).astype(np.int32) - np.int32(zp)).astype(F) * F(scale)


def head_logits(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x (N, E) float32, w (C, E), b (C,) -> (N, C): (sum_k w[c,k] x[n,k], k ascending) + b[c]."""
    acc = np.zeros((x.shape[0], w.shape[0]), F)
    for k in range(w.shape[1]):
        acc = acc + w[None, :, k] * x[:, k, None]
    return acc + b[None, :]


# ---- trainer ---------------------------------------------------------------------------------

@dataclass
class HeadConfig:
    """ekws_head_config_t. Defaults are the ones `edgekws retrain` uses."""

    num_classes: int
    embed_size: int
    max_examples: int = MAX_EXAMPLES
    batch: int = 16
    seed: int = 1
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-3
    imprint_scale: float = 8.0

    def check(self) -> None:
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise EdgekwsError(f"head: {self.num_classes} classes; must be in [2, {MAX_CLASSES}]")
        if not 1 <= self.embed_size <= MAX_EMBED:
            raise EdgekwsError(f"head: embedding size {self.embed_size}; must be in [1, {MAX_EMBED}]")
        if not 0 <= self.max_examples <= MAX_EXAMPLES:
            raise EdgekwsError(f"head: max_examples must be in [0, {MAX_EXAMPLES}]")
        # judged as float32, the trainers' type (as the C trainer: 1e39 is +inf there, 1e-50 is 0)
        with np.errstate(over="ignore"):   # 1e39 becomes inf, which the rules refuse
            f32 = {k: np.float32(getattr(self, k)) for k in ("lr", "momentum", "weight_decay", "imprint_scale")}
        fin = lambda v: bool(np.isfinite(v))  # noqa: E731
        whole = lambda v, lo: is_int(v) and lo <= v < 2 ** 32  # noqa: E731
        rules = {"batch": (whole(self.batch, 1), "an integer in [1, 2^32)"),   # uint32 in C
                 "seed": (whole(self.seed, 0), "an integer in [0, 2^32)"), "lr": (f32["lr"] > 0 and fin(f32["lr"]), "> 0 and finite"),
                 "momentum": (0 <= f32["momentum"] < 1, "in [0, 1)"),
                 "weight_decay": (f32["weight_decay"] >= 0 and fin(f32["weight_decay"]), ">= 0 and finite"),
                 "imprint_scale": (f32["imprint_scale"] > 0 and fin(f32["imprint_scale"]), "> 0 and finite")}
        bad = [f"{k} must be {want}, got {getattr(self, k)!r}" for k, (ok, want) in rules.items() if not ok]
        if bad:
            raise EdgekwsError(f"head: invalid hyper-parameters: {'; '.join(bad)}")


def check_order(order, n: int, what: str, empty: bool = True) -> np.ndarray:
    """Example indices for a gradient or a step, as the C trainer accepts them: 0 <= i < n (a step needs
    at least one). -> int64 array."""
    o = np.asarray(order)
    ok = o.ndim == 1 and (o.size == 0 or (o.dtype.kind in "iu" and 0 <= o.min() and o.max() < n))
    if not ok or (o.size == 0 and not empty):
        raise EdgekwsError(f"head {what}: the example order must be {'' if empty else 'a non-empty '}list of "
                           f"example indices in [0, {n}), got {o.tolist() if o.size <= 8 else o.shape}")
    return o.astype(np.int64)


def train_size(num_classes: int, embed_size: int) -> int:
    """Bytes of the C trainer's float32 training memory (ekws_head_train_size): it may overlay the
    model's arena once the examples are collected (ekws_head_trainer_init_split)."""
    c, e = num_classes, embed_size
    return 4 * (3 * c * e + 4 * c + 3 * e)


def store_size(num_classes: int, embed_size: int, max_examples: int) -> int:
    """Bytes of the C trainer's example store (ekws_head_store_size)."""
    a4 = lambda n: (n + 3) & ~3  # noqa: E731
    c, e, n = num_classes, embed_size, max_examples
    return 4 * c + a4(n * e) + a4(n) + a4(2 * n)


def workspace_size(num_classes: int, embed_size: int, max_examples: int) -> int:
    """Bytes of the C trainer's workspace in one block (ekws_head_workspace_size)."""
    return train_size(num_classes, embed_size) + store_size(num_classes, embed_size, max_examples)


def blob_size(num_classes: int, embed_size: int, with_float: bool) -> int:
    c, e = num_classes, embed_size
    return HEADER_SIZE + ((c * e + 3) & ~3) + 12 * c + (4 * c * e + 4 * c if with_float else 0)


@dataclass
class QHead:
    """A re-quantized head (what a head blob holds).

    weight (C, E) int8, bias (C,) int32, multiplier (C,) int32, shift (C,) int32,
    weight_scale (C,) float32, fweight (C, E) float32, fbias (C,) float32,
    input_scale/zp: the embedding's quantization; output_scale/zp: the int8 logits'.
    """

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    weight_scale: np.ndarray
    fweight: np.ndarray
    fbias: np.ndarray
    input_scale: float
    input_zp: int
    output_scale: float
    output_zp: int

    def blob(self, with_float: bool = False) -> bytes:
        """The EKWH blob of ekws/head.h (ekws_head_quantize writes the same bytes)."""
        c, e = self.weight.shape
        total = blob_size(c, e, with_float)
        head = struct.pack("<12I", MAGIC, VERSION, total, 0, c, e, FLAG_FLOAT if with_float else 0,
                           self.input_zp & 0xFFFFFFFF, int(np.float32(self.input_scale).view(np.uint32)),
                           self.output_zp & 0xFFFFFFFF, int(np.float32(self.output_scale).view(np.uint32)), 0)
        w = self.weight.astype(np.int8).tobytes()
        body = w + b"\0" * (((len(w) + 3) & ~3) - len(w))
        body += b"".join(a.astype("<i4").tobytes() for a in (self.bias, self.multiplier, self.shift))
        if with_float:
            body += self.fweight.astype("<f4").tobytes() + self.fbias.astype("<f4").tobytes()
        blob = bytearray(head + body)
        struct.pack_into("<I", blob, 12, zlib.crc32(bytes(blob)) & 0xFFFFFFFF)
        return bytes(blob)

    @classmethod
    def from_blob(cls, blob: bytes, where: str = "head blob") -> "QHead":
        """Parse and validate a blob (the checks of ekws_head_check); EdgekwsError names `where`."""
        if len(blob) < HEADER_SIZE:
            raise EdgekwsError(f"{where}: truncated header")
        h = struct.unpack_from("<12I", blob)
        if h[0] != MAGIC or h[1] != VERSION:
            raise EdgekwsError(f"{where}: not an edgekws head blob of version {VERSION}")
        c, e, flags = h[4], h[5], h[6]
        if not (2 <= c <= MAX_CLASSES and 1 <= e <= MAX_EMBED) or flags & ~1:
            raise EdgekwsError(f"{where}: bad dimensions or flags")
        total = blob_size(c, e, bool(flags & 1))
        if h[2] != total or len(blob) < total:
            raise EdgekwsError(f"{where}: truncated or size field wrong")
        check = bytearray(blob[:total])
        struct.pack_into("<I", check, 12, 0)
        if zlib.crc32(bytes(check)) & 0xFFFFFFFF != h[3]:
            raise EdgekwsError(f"{where}: bad CRC (damaged)")
        off = HEADER_SIZE
        w = np.frombuffer(blob, np.int8, c * e, off).reshape(c, e)
        off += (c * e + 3) & ~3
        bias, mult, shift = (np.frombuffer(blob, "<i4", c, off + 4 * c * i).astype(np.int32) for i in range(3))
        off += 12 * c
        if flags & 1:
            fw = np.frombuffer(blob, "<f4", c * e, off).reshape(c, e).astype(F)
            fb = np.frombuffer(blob, "<f4", c, off + 4 * c * e).astype(F)
        else:
            fw, fb = np.zeros((c, e), F), np.zeros(c, F)
        s32 = lambda u: u - (1 << 32) if u >= 1 << 31 else u  # noqa: E731
        in_scale = float(np.uint32(h[8]).view(F))
        out_scale = float(np.uint32(h[10]).view(F))
        fmax = float(np.finfo(F).max)
        if not (-128 <= s32(h[7]) <= 127 and -128 <= s32(h[9]) <= 127 and 0 < in_scale < fmax
                and 0 < out_scale < fmax):
            raise EdgekwsError(f"{where}: bad quantization parameters")
        if np.any(mult < 0) or np.any(shift < SHIFT_MIN) or np.any(shift > SHIFT_MAX):
            raise EdgekwsError(f"{where}: bad multiplier or shift")
        amax = np.abs(fw).max(axis=1) if flags & 1 else np.ones(c, F) * F(127)
        return cls(w.copy(), bias, mult, shift, np.where(amax > 0, amax / F(127), F(1)).astype(F), fw, fb,
                   in_scale, s32(h[7]), out_scale, s32(h[9]))


def check_examples(cfg: HeadConfig, have: int, embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    """What a head trainer (numpy or C) accepts in add(): all of it, or nothing is stored.
    -> (int8 (N, E) contiguous, int64 (N,))."""
    q = np.ascontiguousarray(embeddings)
    y = np.asarray(labels).reshape(-1)
    if q.dtype != np.int8 or q.ndim != 2 or q.shape[1] != cfg.embed_size or len(y) != len(q):
        raise EdgekwsError(f"head: embeddings must be int8 (N, {cfg.embed_size}) with N labels, "
                           f"got {q.dtype} {q.shape} and {len(y)} labels")
    if len(y) and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= cfg.num_classes):
        raise EdgekwsError(f"head: labels must be integers in [0, {cfg.num_classes})")
    if have + len(y) > cfg.max_examples:
        raise EdgekwsError(f"head: room for {cfg.max_examples} examples only")
    return q, y.astype(np.int64)


def check_rows(cfg: HeadConfig, weight, bias) -> tuple[np.ndarray, np.ndarray]:
    """Head rows (C, E) and bias (C,) as float32, or an error naming the shapes (C would read past them)."""
    w, b = np.asarray(weight, F), np.asarray(bias, F)
    c, e = cfg.num_classes, cfg.embed_size
    if w.shape != (c, e) or b.shape != (c,):
        raise EdgekwsError(f"head: weights must be ({c}, {e}) and bias ({c},), got {w.shape} and {b.shape}")
    return w.copy(), b.copy()


class HeadTrainer:
    """numpy version of ekws_head_trainer_t (same state, same results)."""

    def __init__(self, config: HeadConfig, emb_scale: float, emb_zp: int):
        config.check()
        if not 0 < emb_scale < np.finfo(F).max or not -128 <= int(emb_zp) <= 127:
            raise EdgekwsError(f"head: invalid embedding quantization scale={emb_scale} zp={emb_zp}")
        self.cfg = config
        self.emb_scale = F(emb_scale)
        self.emb_zp = int(emb_zp)
        c, e = config.num_classes, config.embed_size
        self.weight = np.zeros((c, e), F)
        self.bias = np.zeros(c, F)
        self.vel_w = np.zeros((c, e), F)
        self.vel_b = np.zeros(c, F)
        self.grad_w = np.zeros((c, e), F)
        self.grad_b = np.zeros(c, F)
        self.emb = np.zeros((0, e), np.int8)
        self.labels = np.zeros(0, np.int64)
        self.rng = config.seed if config.seed else 1
        self.epochs = 0
        self.standardized = False
        self.mean = np.zeros(e, F)
        self.isd = np.zeros(e, F)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def add(self, embeddings: np.ndarray, labels) -> None:
        """embeddings (N, E) int8 (the backbone output), labels (N,) in [0, C)."""
        q, y = check_examples(self.cfg, self.num_examples, embeddings, labels)
        self.emb = np.concatenate([self.emb, q])
        self.labels = np.concatenate([self.labels, y])

    def set_weights(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Initial rows in the embedding's space, before standardize/imprint (ekws_head_set_weights)."""
        if self.standardized:
            raise EdgekwsError("head: set_weights must come before standardize/imprint (the rows given "
                               "would be read in the wrong space)")
        self._set_rows(weight, bias)

    def set_standardized_rows(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Rows already in the standardized space, after imprint (numpy only: the triplet step)."""
        if not self.standardized:
            raise EdgekwsError("head: set_standardized_rows needs standardize/imprint first")
        self._set_rows(weight, bias)

    def _set_rows(self, weight, bias) -> None:
        self.weight, self.bias = check_rows(self.cfg, weight, bias)
        self.vel_w[...] = 0
        self.vel_b[...] = 0

    def x_raw(self, idx=None) -> np.ndarray:
        """Stored examples in the embedding's space, float32 (N, E)."""
        return dequantize(self.emb if idx is None else self.emb[idx], self.emb_scale, self.emb_zp)

    def x(self, idx=None) -> np.ndarray:
        """Stored examples in the training space: raw, or (raw - mean) * isd after imprint."""
        x = self.x_raw(idx)
        return (x - self.mean[None, :]) * self.isd[None, :] if self.standardized else x

    def _standardize(self) -> None:
        """Per-dimension mean and 1/std of the examples; rows given so far move to that space."""
        n = self.num_examples
        x = self.x_raw()
        c_n, e = self.weight.shape
        mean = np.zeros(e, F)
        for i in range(n):
            mean = mean + x[i]
        mean = mean / F(n)
        var = np.zeros(e, F)
        for i in range(n):
            d = x[i] - mean
            var = var + d * d
        half = F(F(0.5) * self.emb_scale)
        self.isd = (F(1) / sqrtf(var / F(n) + F(half * half))).astype(F)
        self.mean = mean
        acc = np.zeros(c_n, F)
        for k in range(e):
            acc = acc + self.weight[:, k] * mean[k]
        self.weight = (self.weight / self.isd[None, :]).astype(F)
        self.bias = (self.bias + acc).astype(F)
        self.standardized = True
        self.vel_w[...] = 0
        self.vel_b[...] = 0

    def standardize(self) -> None:
        """Standardize only, keeping the rows given by set_weights (ekws_head_standardize): for new
        clips of the labels the head already knows, e.g. a user enrolling their voice."""
        if self.num_examples == 0 or self.standardized:
            raise EdgekwsError("head: standardize needs examples and runs once")
        self._standardize()

    def imprint(self) -> None:
        """Standardize, then normalized class means (ekws_head_imprint)."""
        if self.num_examples == 0 or self.standardized:
            raise EdgekwsError("head: imprint needs examples and runs once")
        self._standardize()
        n = self.num_examples
        c_n, e = self.weight.shape
        xs = self.x()
        sums = np.zeros((c_n, e), F)
        s = np.zeros(n, F)
        for k in range(e):
            s = s + xs[:, k] * xs[:, k]
        for i in range(n):
            sums[self.labels[i]] = sums[self.labels[i]] + xs[i]
        dist = sqrtf(s)
        rsum = F(0)
        for i in range(n):
            rsum = F(rsum + dist[i])
        r = F(rsum / F(n))
        if not r > 0:
            r = F(1)
        alpha = F(F(self.cfg.imprint_scale) / r)
        counts = np.bincount(self.labels, minlength=c_n)
        ss = np.zeros(c_n, F)
        for k in range(e):
            ss = ss + sums[:, k] * sums[:, k]
        norm = sqrtf(ss)
        g = np.where(norm > 0, alpha / np.where(norm > 0, norm, F(1)), F(0)).astype(F)
        w = sums * g[:, None]
        has = counts > 0
        self.weight[has] = w[has]
        self.bias[has] = F(0)

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight (C, E), bias (C,)) in the embedding's space (ekws_head_folded)."""
        if not self.standardized:
            return self.weight.copy(), self.bias.copy()
        w = (self.weight * self.isd[None, :]).astype(F)
        acc = np.zeros(w.shape[0], F)
        for k in range(w.shape[1]):
            acc = acc + w[:, k] * self.mean[k]
        return w, (self.bias - acc).astype(F)

    def gradient(self, order) -> float:
        """Fill grad_w/grad_b with the summed CE gradient of examples `order`; -> summed loss (float32)."""
        return self._gradient(check_order(order, len(self.labels), "gradient"))

    def _gradient(self, order: np.ndarray) -> float:
        x = self.x(order)
        y = self.labels[order]
        z = head_logits(self.weight, self.bias, x)
        mx = z[:, 0].copy()
        for c in range(1, z.shape[1]):
            mx = np.where(z[:, c] > mx, z[:, c], mx)
        zy = z[np.arange(len(order)), y] - mx
        p = expf(z - mx[:, None])
        s = np.zeros(len(order), F)
        for c in range(z.shape[1]):
            s = s + p[:, c]
        losses = logf(s) - zy
        g = p / s[:, None]
        g[np.arange(len(order)), y] -= F(1)
        self.grad_w[...] = 0
        self.grad_b[...] = 0
        total = F(0)
        for j in range(len(order)):
            total = F(total + losses[j])
            self.grad_w = self.grad_w + g[j][:, None] * x[j][None, :]
            self.grad_b = self.grad_b + g[j]
        return total

    def step(self, order) -> float:
        """One SGD step with momentum on examples `order` (ekws_head_step); -> summed loss."""
        order = check_order(order, len(self.labels), "step", empty=False)
        loss = self._gradient(order)
        nf = F(len(order))
        c = self.cfg
        d = self.grad_w / nf + F(c.weight_decay) * self.weight
        self.vel_w = F(c.momentum) * self.vel_w + d
        self.weight = self.weight - F(c.lr) * self.vel_w
        db = self.grad_b / nf
        self.vel_b = F(c.momentum) * self.vel_b + db
        self.bias = self.bias - F(c.lr) * self.vel_b
        return loss

    def epoch_order(self) -> np.ndarray:
        """The next epoch's Fisher-Yates shuffle with xorshift32 (advances the generator)."""
        n = self.num_examples
        order = list(range(n))
        for i in range(n - 1, 0, -1):
            self.rng = xorshift32(self.rng)
            j = self.rng % (i + 1)
            order[i], order[j] = order[j], order[i]
        return np.array(order, np.int64)

    def train_epoch(self) -> float:
        """Shuffle, then steps of cfg.batch examples; -> mean example loss (float32)."""
        n = self.num_examples
        if n == 0:
            raise EdgekwsError("head: no examples to train on")
        order = self.epoch_order()
        total = F(0)
        for start in range(0, n, self.cfg.batch):
            total = F(total + self.step(order[start:start + self.cfg.batch]))
        self.epochs += 1
        return float(F(total / F(n)))

    def logits(self) -> np.ndarray:
        """float32 logits (N, C) of the stored examples with the training-space weights."""
        return head_logits(self.weight, self.bias, self.x())

    def quantize(self) -> QHead:
        """Re-quantize the folded head to int8 (ekws_head_quantize)."""
        w, b = self.folded()
        return quantize_head(w, b, self.emb_scale, self.emb_zp, head_logits(w, b, self.x_raw()))


def quantize_head(weight: np.ndarray, bias: np.ndarray, emb_scale: float, emb_zp: int,
                  calib_logits: np.ndarray) -> QHead:
    """float32 head -> QHead. calib_logits (N, C) float32: the output range (0 included)."""
    w = np.asarray(weight, F)
    b = np.asarray(bias, F)
    if not (np.isfinite(w).all() and np.isfinite(b).all() and np.isfinite(calib_logits).all()):
        # as ekws_head_quantize: a diverged training (inf / NaN weights) has no int8 head
        raise EdgekwsError("head: the trained head is not finite (training diverged: lower the learning rate)")
    lo = F(min(0.0, float(calib_logits.min()) if calib_logits.size else 0.0))
    hi = F(max(0.0, float(calib_logits.max()) if calib_logits.size else 0.0))
    with np.errstate(over="ignore"):   # an overflowing range is refused just below
        if F(hi - lo) < F(1e-6):
            hi = F(lo + F(1e-6))
        out_scale = F(F(hi - lo) / F(255.0))
    if not np.isfinite(out_scale):   # as ekws_head_quantize: the logits' range overflows float32
        raise EdgekwsError("head: the trained head is not finite (its logits overflow float32: training diverged)")
    out_zp = int(np.clip(round_half_away(F(F(-128.0) - F(lo / out_scale))), -128, 127))
    amax = np.abs(w).max(axis=1)
    sw = np.where(amax > 0, amax / F(127.0), F(1)).astype(F)
    q = np.clip(round_half_away(np.clip(w / sw[:, None], F(-200), F(200))), -127, 127).astype(np.int8)
    s_in_w = (F(emb_scale) * sw).astype(F)
    bq = round_half_away(np.clip(b / s_in_w, -BIAS_LIMIT, BIAS_LIMIT)).astype(np.int64).astype(np.int32)
    mults, shifts = zip(*(quantize_multiplier(float(F(s / out_scale)), f"head class {i}")
                          for i, s in enumerate(s_in_w)))
    return QHead(q, bq, np.array(mults, np.int32), np.array(shifts, np.int32), sw, w.copy(), b.copy(),
                 float(F(emb_scale)), int(emb_zp), float(out_scale), out_zp)
