"""`edgekws report MODEL`: learning curves and confusion matrix (PNG) and one self-contained HTML page.

The page shows the training metadata and settings, the evaluation metrics of MODEL/metrics.json
(written by `edgekws eval`; or pass `--data DATA` to evaluate now), the per-layer device budget, and
the plots embedded as base64 PNG. matplotlib is optional: without it the command says how to install it and
writes the HTML without plots. Outputs go into the bundle: curves.png, confusion-<engine>.png, report.html.
"""

from __future__ import annotations

import base64
import html
import io
import sys

from edgekws.errors import MissingDependencyError

# history.json columns: training writes all of them, retraining a head only epoch and train_loss
HISTORY_COLUMNS = (("epoch", "epoch", "d"), ("train_loss", "train loss", ".4f"), ("train_accuracy", "train acc", ".4f"),
                   ("val_loss", "val loss", ".4f"), ("val_accuracy", "val acc", ".4f"), ("seconds", "seconds", ".1f"))
PLOT_HINT = 'pip install "edgekws[plot]"  (or: pip install matplotlib)'


def _pyplot():
    """matplotlib.pyplot with a non-interactive backend, or MissingDependencyError."""
    from edgekws.errors import require

    mpl = require("matplotlib", PLOT_HINT, "plots in edgekws report")
    mpl.use("Agg")
    return require("matplotlib.pyplot", PLOT_HINT, "plots in edgekws report")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def plot_curves(history: list[dict]) -> bytes:
    """PNG bytes: loss and accuracy per epoch, training and validation; a history without accuracy
    or validation (a retrained head records its training loss only) gets what it has."""
    plt = _pyplot()
    has_acc = any("train_accuracy" in h for h in history)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.6), squeeze=False)
    ep = [h["epoch"] for h in history]
    for ax, what in zip(axes[0], ("loss", "accuracy")):
        for key, name in ((f"train_{what}", "train"), (f"val_{what}", "validation")):
            if all(key in h for h in history):
                ax.plot(ep, [h[key] for h in history], label=name)
        ax.set_xlabel("epoch"), ax.set_ylabel(what), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def plot_confusion(m: dict, title: str = "") -> bytes:
    """PNG bytes of a metrics dict's confusion matrix (rows true, columns predicted)."""
    import numpy as np

    plt = _pyplot()
    conf = np.asarray(m["confusion"], float)
    labels = m["labels"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * len(labels), 0.8 + 0.5 * len(labels)))
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {m['accuracy']:.3f} (n = {m['n']})")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def render_html(manifest: dict, history: list[dict], metrics: dict | None, budget_rows: list,
                budget_totals: dict, images: dict[str, bytes], note: str = "") -> str:
    """The report page as one string; images are embedded as data: URIs."""
    esc = html.escape
    tr = manifest.get("training", {})
    arch = manifest.get("architecture", {})
    parts = [f"<h1>edgekws model report</h1><p>labels: {esc(', '.join(manifest['labels']))}<br>"
             f"architecture: <b>{esc(str(arch.get('name')))}</b>, created {esc(str(manifest.get('created')))}</p>"]
    if note:
        parts.append(f"<p class='note'>{esc(note)}</p>")
    meta = [[k, tr[k]] for k in ("dataset", "dataset_fingerprint", "seed", "epochs_run", "best_epoch",
                                 "val_accuracy", "train_seconds", "n_train", "n_val") if k in tr]
    if "config" in tr:   # the settings that decided the weights (a field older than the bundle: its value then)
        from edgekws.train import TrainConfig

        name = "base config" if "retrain" in tr or "adapted" in tr else "config"   # they copy the base's
        meta += [[f"{name} {k}", "default" if v is None else v]
                 for k, v in TrainConfig.from_dict(tr["config"]).to_dict().items()]
    env = tr.get("environment", {})
    meta += [[f"version {k}", v] for k, v in env.items()]
    parts.append("<h2>Training</h2>" + _table(["field", "value"], meta))
    if "curves" in images:
        parts.append(f"<img alt='learning curves' src='data:image/png;base64,{base64.b64encode(images['curves']).decode()}'>")
    if history:
        cols = [(k, name, fmt) for k, name, fmt in HISTORY_COLUMNS if all(k in h for h in history)]
        parts.append(_table([name for _, name, _ in cols], [[format(h[k], fmt) for k, _, fmt in cols] for h in history]))
    parts.append("<h2>Evaluation</h2>")
    if metrics:
        engines = [k for k in metrics if isinstance(metrics[k], dict) and "accuracy" in metrics[k]]
        parts.append(f"<p>split <b>{esc(str(metrics.get('split')))}</b> of {esc(str(metrics.get('dataset')))}: "
                     + ", ".join(f"{e} accuracy <b>{metrics[e]['accuracy']:.4f}</b> (n = {metrics[e]['n']})"
                                 for e in engines) + "</p>")
        for e in engines:
            m = metrics[e]
            parts.append(f"<h3>{esc(e)}</h3>" + _table(
                ["label", "precision", "recall", "n"],
                [[lab, f"{v['precision']:.3f}", f"{v['recall']:.3f}", v["n"]] for lab, v in m["per_class"].items()]))
            if f"confusion_{e}" in images:
                img = base64.b64encode(images[f"confusion_{e}"]).decode()
                parts.append(f"<img alt='confusion matrix {esc(e)}' src='data:image/png;base64,{img}'>")
            else:
                short = [lab.strip("_")[:6] for lab in m["labels"]]
                parts.append("<p>confusion (rows: true, columns: predicted)</p>"
                             + _table([""] + short, [[lab] + row for lab, row in zip(m["labels"], m["confusion"])]))
    else:
        parts.append("<p>No evaluation yet: run <code>edgekws eval MODEL DATA</code> (or "
                     "<code>edgekws report MODEL --data DATA</code>).</p>")
    parts.append("<h2>Device budget (int8)</h2>" + _table(
        ["layer", "op", "output", "weight bytes", "MACs / 1 s", "activation bytes", "int8/C", "folded"],
        [[r["name"], r["op"], "x".join(map(str, r["output_shape"])), f"{r['weight_bytes']:,}", f"{r['macs']:,}",
          f"{r['activation_bytes']:,}", "yes" if r["int8_ready"] else "no", ", ".join(r["folded"])]
         for r in budget_rows]))
    lim = budget_totals["limits"]
    parts.append(_table(["", "weight bytes", "MACs / 1 s", "activation bytes"],
                        [["total", f"{budget_totals['weight_bytes']:,}", f"{budget_totals['macs']:,}",
                          f"{budget_totals['activation_bytes']:,}"],
                         ["budget", f"{lim['weight_bytes']:,}", f"{lim['macs']:,}", f"{lim['activation_bytes']:,}"]]))
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
             "text-align:right}th{background:#f0f0f0}img{max-width:100%}.note{color:#a40}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>edgekws report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def make_report(bundle, data=None, split: str = "test", plots: bool = True, log=print) -> str:
    """Write the report into the bundle (report.html, and curves.png / confusion*.png with
    matplotlib); returns the HTML. `data` evaluates first when given."""
    from edgekws.bundle import as_bundle
    from edgekws.models import arch_budget

    bundle = as_bundle(bundle)
    if data is not None:
        from edgekws.evaluate import evaluate

        bundle.write_json("metrics.json", evaluate(bundle, data, split=split))
    history = bundle.read_json("history.json") if bundle.has("history.json") else []
    metrics = bundle.read_json("metrics.json") if bundle.has("metrics.json") else None
    budget = arch_budget(bundle.manifest["architecture"]).to_dict()
    images: dict[str, bytes] = {}
    note = ""
    if plots:
        try:
            if history:
                images["curves"] = plot_curves(history)
            for e, m in (metrics or {}).items():
                if isinstance(m, dict) and "confusion" in m:
                    images[f"confusion_{e}"] = plot_confusion(m, f"{e}: accuracy {m['accuracy']:.3f} (n = {m['n']})")
        except MissingDependencyError as exc:
            note = f"No plots: {exc}"
            log(f"edgekws report: {note}", file=sys.stderr) if log is print else log(note)
            images = {}
    written = []
    for name, png in images.items():
        written.append("curves.png" if name == "curves" else f"{name.replace('_', '-')}.png")
        bundle.write_bytes(written[-1], png)
    # plots of an earlier report (another split, or plots this time off) would contradict the page
    bundle.remove([n for n in bundle.files if n not in written and (n == "curves.png" or
                                                                    (n.startswith("confusion-") and n.endswith(".png")))])
    page = render_html(bundle.manifest, history, metrics, budget["rows"], budget, images, note)
    bundle.write_bytes("report.html", page.encode("utf-8"))
    return page


def register(sub) -> None:
    p = sub.add_parser("report", help="learning curves, confusion matrix and an HTML report of a model",
                       description="Write MODEL/report.html (self-contained) and PNG plots (needs "
                                   "matplotlib; without it the HTML has tables only).")
    p.add_argument("model", help="model bundle folder")
    p.add_argument("--data", help="evaluate on this dataset first (else MODEL/metrics.json from `edgekws eval`)")
    p.add_argument("--split", choices=["test", "val", "train", "all"], help="with --data (default test)")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgekws.errors import EdgekwsError

    if args.split and not args.data:
        raise EdgekwsError("--split chooses the split of --data; give --data DATA too")
    make_report(args.model, data=args.data, split=args.split or "test", plots=not args.no_plots)
    print(f"{args.model}/report.html written")
    return 0
