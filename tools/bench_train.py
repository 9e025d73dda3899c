"""Training-step benchmark of the numpy engine against PyTorch on the FIXED reference DS-CNN.

Model (keep it fixed so figures stay comparable): Conv2D 64x(10x4) stride 2 "same" -> 3 x
[DepthwiseConv2D 3x3 + Conv2D 64x1x1], BatchNorm + ReLU after every conv -> GlobalAvgPool ->
Dense 12; input 49x40x1; 8,288,768 MACs and 18,252 parameters per example (no conv biases).
Step = zero_grad + forward + softmax cross-entropy + backward + Adam, batch 100.

Each thread count T runs in its own subprocess, threads fixed by environment variables before
numpy/torch load: the engine gets T threads (EDGEKWS_NUM_THREADS) and numpy's OpenBLAS 1 (the
engine runs its matrix products on its own threads); PyTorch gets torch.set_num_threads(T). Inside it the engines alternate A B A B and the medians are
compared, because the machine may be shared and noisy. PyTorch is optional (pip install
torch==2.13.0); without it the comparison prints "skipped".

    python tools/bench_train.py            # 1 and 2 threads, 20 alternating rounds
    python tools/bench_train.py --quick    # a few steps: smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgekws, installed or not

from edgekws.cliargs import positive_int  # noqa: E402

BATCH, SHAPE, CLASSES = 100, (49, 40, 1), 12


def numpy_model(seed=0):
    from edgekws import nn
    layers = [nn.Conv2D(64, (10, 4), stride=2, padding="same", use_bias=False, name="conv1"),
              nn.BatchNorm(name="bn1"), nn.ReLU(name="relu1")]
    for i in range(2, 5):
        layers += [nn.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}"),
                   nn.BatchNorm(name=f"bn{i}dw"), nn.ReLU(name=f"relu{i}dw"),
                   nn.Conv2D(64, 1, use_bias=False, name=f"pw{i}"),
                   nn.BatchNorm(name=f"bn{i}pw"), nn.ReLU(name=f"relu{i}pw")]
    layers += [nn.GlobalAvgPool(name="pool"), nn.Dense(CLASSES, name="fc")]
    return nn.Sequential(layers, SHAPE, rng=seed)


def torch_model(np_model):
    """The identical network in PyTorch (NCHW), initialized with the numpy model's weights."""
    import torch
    from torch import nn as tnn
    sd = np_model.state_dict()
    w = lambda k: torch.from_numpy(sd[k].copy())  # noqa: E731
    mods = [tnn.ZeroPad2d((1, 1, 4, 5)), tnn.Conv2d(1, 64, (10, 4), stride=2, bias=False),
            tnn.BatchNorm2d(64), tnn.ReLU()]
    for _ in range(3):
        mods += [tnn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), tnn.BatchNorm2d(64), tnn.ReLU(),
                 tnn.Conv2d(64, 64, 1, bias=False), tnn.BatchNorm2d(64), tnn.ReLU()]
    mods += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, CLASSES)]
    model = tnn.Sequential(*mods)
    with torch.no_grad():
        model[1].weight.copy_(w("conv1.weight").permute(0, 3, 1, 2))
        for i in range(3):
            base = 4 + 6 * i
            model[base].weight.copy_(w(f"dw{i + 2}.weight").permute(2, 0, 1)[:, None])
            model[base + 3].weight.copy_(w(f"pw{i + 2}.weight").permute(0, 3, 1, 2))
        model[-1].weight.copy_(w("fc.weight"))
        model[-1].bias.copy_(w("fc.bias"))
    return model


def make_numpy_step(model):
    from edgekws import nn
    ce, opt = nn.SoftmaxCrossEntropy(), nn.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        model.zero_grad()
        loss = ce.forward(model(x, training=True), y)
        model.backward(ce.backward())
        opt.step()
        return loss
    return step


def make_torch_step(model):
    import torch
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=False)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def per_layer_times(model, step, x, y, repeats):
    """Median forward and backward ms per layer (a fused BN+ReLU counts under the BN)."""
    times = {layer.name: {"forward": [], "backward": []} for layer in model.layers}
    originals = {}
    for layer in model.layers:
        originals[layer.name] = (layer.forward, layer.backward)

        def timed(fn, name, kind):
            def run(*a, **k):
                t0 = time.perf_counter()
                out = fn(*a, **k)
                times[name][kind].append(time.perf_counter() - t0)
                return out
            return run
        layer.forward = timed(layer.forward, layer.name, "forward")
        layer.backward = timed(layer.backward, layer.name, "backward")
    try:
        for _ in range(repeats):
            step(x, y)
    finally:
        for layer in model.layers:
            layer.forward, layer.backward = originals[layer.name]
    return {name: {k: 1e3 * statistics.median(v) if v else 0.0 for k, v in t.items()}
            for name, t in times.items()}


def worker(threads: int, rounds: int, use_torch: bool) -> dict:
    import numpy as np
    from edgekws import nn
    nn.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, size=(BATCH, *SHAPE)).astype(np.float32)
    y = rng.integers(0, CLASSES, BATCH)
    model = numpy_model()
    np_step = make_numpy_step(model)
    engines = {"numpy": (np_step, (x, y))}
    result = {"threads": threads, "macs_per_example": model.macs(),
              "params": model.num_params(), "torch": None}
    if use_torch:
        try:
            import torch
        except ImportError:
            use_torch = False
        else:
            torch.set_num_threads(threads)
            tmodel = torch_model(model)
            engines["torch"] = (make_torch_step(tmodel),
                                (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y)))
            result["torch"] = torch.__version__
    for step, args in engines.values():  # warm-up
        step(*args)
        step(*args)
    samples = {k: [] for k in engines}
    for _ in range(rounds):  # A B A B ...
        for name, (step, args) in engines.items():
            t0 = time.perf_counter()
            step(*args)
            samples[name].append(time.perf_counter() - t0)
    result["ms"] = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    result["ms_all"] = {k: [round(1e3 * s, 2) for s in v] for k, v in samples.items()}
    result["layers"] = per_layer_times(model, np_step, x, y, max(3, rounds // 4))
    tracemalloc.start()
    np_step(x, y)
    result["numpy_peak_traced_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result


def peak_rss(engine: str, threads: int) -> float:
    """Peak resident memory (MB) of a fresh process doing 3 steps of one engine only."""
    code = (f"import sys, resource; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r});"
            "import bench_train as b, numpy as np;"
            "m = b.numpy_model(); x = np.zeros((b.BATCH, *b.SHAPE), np.float32); y = np.zeros(b.BATCH, int);"
            + ("s = b.make_numpy_step(m); a = (x, y);" if engine == "numpy" else
               "import torch; t = b.torch_model(m); s = b.make_torch_step(t);"
               "a = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y));")
            + "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "[s(*a) for _ in range(3)];"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, base / 1024)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(threads), capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    peak, _ = out.stdout.split()
    return float(peak)


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "EDGEKWS_NUM_THREADS"):
        env[var] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = "1"  # numpy's BLAS: the engine's own threads run the products
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=positive_int, default=20, help="alternating A B rounds per thread count")
    ap.add_argument("--quick", action="store_true", help="3 rounds, 1 thread, no memory runs (smoke test)")
    ap.add_argument("--no-torch", action="store_true", help="numpy only")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        ap.error(f"--threads: comma-separated thread counts, got {args.threads!r}")
    if min(counts) < 1 or args.rounds < 1:
        ap.error("--threads and --rounds must be at least 1")
    if args.worker is not None:   # worker 0 is a worker too (a thread count of 0 was refused above)
        print(json.dumps(worker(args.worker, args.rounds, not args.no_torch)))
        return 0
    threads = [1] if args.quick else counts
    rounds = 3 if args.quick else args.rounds
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"reference DS-CNN, batch {BATCH}, step = forward + backward + Adam; {rounds} alternating rounds; "
          f"malloc env: {malloc or 'default'}")
    results = []
    for t in threads:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(t), "--rounds", str(rounds)]
        if args.no_torch:
            cmd.append("--no-torch")
        out = subprocess.run(cmd, env=_env(t), capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if not args.quick:
            r["peak_rss_mb"] = {"numpy": peak_rss("numpy", t)}
            if r["torch"]:
                r["peak_rss_mb"]["torch"] = peak_rss("torch", t)
        results.append(r)
        ms = r["ms"]
        torch_txt = (f"PyTorch {r['torch']} {ms['torch']:.1f} ms   ratio numpy/torch {ms['numpy'] / ms['torch']:.2f}"
                     if "torch" in ms else "PyTorch skipped" + ("" if args.no_torch else " (not installed)"))
        print(f"\n{t} thread(s): {r['macs_per_example']:,} MACs, {r['params']:,} params per example")
        print(f"  numpy {ms['numpy']:.1f} ms/step   {torch_txt}   (medians)")
        if "peak_rss_mb" in r:
            print("  peak RSS (fresh process, 3 steps): " +
                  ", ".join(f"{k} {v:.0f} MB" for k, v in r["peak_rss_mb"].items()))
        print(f"  numpy peak traced allocations during one step: {r['numpy_peak_traced_mb']:.0f} MB")
        print(f"  {'layer':<10}{'fwd ms':>8}{'bwd ms':>8}")
        for name, v in r["layers"].items():
            if v["forward"] + v["backward"] >= 0.05:
                print(f"  {name:<10}{v['forward']:>8.1f}{v['backward']:>8.1f}")
    if args.json:
        from edgekws.fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
