"""`edgekws export MODEL --onnx --c [DIR]`: ONNX graphs (onnx.py) and C data + model blob (c.py).

    --onnx      writes MODEL/model.onnx (float, BatchNorm folded) and, for a quantized bundle,
                MODEL/model.int8.onnx (integer operators, bit-exact with the numpy int8 reference)
    --c [DIR]   writes model.bin, ekws_model_data.c/.h (default DIR: MODEL/c) for firmware/

Python API: export_onnx(bundle), export_c_dir(bundle, out_dir).
"""

from __future__ import annotations

from pathlib import Path

from edgekws.errors import EdgekwsError
from edgekws.fileio import other_files


def export_onnx(bundle, log=print) -> dict[str, int]:
    """Write model.onnx (and model.int8.onnx if quantized) into the bundle; returns {name: bytes}."""
    from edgekws.bundle import as_bundle
    from edgekws.export.onnx import float_onnx, int8_onnx
    from edgekws.features import FeatureConfig
    from edgekws.quant import fold_model, load_float_model, load_quantized

    bundle = as_bundle(bundle)
    fc = FeatureConfig.from_dict(bundle.manifest["feature_config"])
    out = {}
    model = float_onnx(fold_model(load_float_model(bundle)), fc.input_scale, fc.input_zero_point,
                       bundle.labels, fc.to_dict()).SerializeToString()
    bundle.write_bytes("model.onnx", model)
    out["model.onnx"] = len(model)
    if bundle.manifest.get("quantization"):
        data = int8_onnx(load_quantized(bundle), bundle.labels, fc.to_dict()).SerializeToString()
        bundle.write_bytes("model.int8.onnx", data)
        out["model.int8.onnx"] = len(data)
    else:
        log(f"{bundle.path}: not quantized, so no model.int8.onnx (run: edgekws quantize {bundle.path})")
    return out


def export_c_dir(bundle, out_dir=None) -> dict[str, int]:
    """Write the C data of the quantized bundle into out_dir (default MODEL/c): an empty or new
    folder, or one holding an earlier C export (never a folder of other files)."""
    from edgekws.bundle import as_bundle
    from edgekws.export.c import export_c
    from edgekws.quant import load_quantized

    bundle = as_bundle(bundle)
    if out_dir:
        check_c_folder(Path(out_dir), bundle, "out_dir")
    qm = load_quantized(bundle)
    return export_c(qm, bundle.labels, bundle.manifest["feature_config"],
                    Path(out_dir) if out_dir else bundle.path / "c", bundle)


C_FILES = ("ekws_model_data.c", "ekws_model_data.h", "model.bin")


def check_c_folder(out: Path, bundle, option: str = "--c") -> None:
    """`--c DIR` writes the C arrays into DIR: refuse a file, and a folder holding anything but an
    earlier C export (a dataset, another project, the user's sources: never written into)."""
    if out.resolve() == (bundle.path / "c").resolve():
        return
    if out.exists() and not out.is_dir():
        raise EdgekwsError(f"{option} {out}: is a file, not a folder")
    if (out.parent / "manifest.json").is_file() and out.parent.resolve() != bundle.path.resolve():
        # another bundle's c/: its listed files would change under it
        raise EdgekwsError(f"{option} {out}: is inside the model bundle {out.parent}; choose a folder outside "
                           "other bundles")
    if others := other_files(out, C_FILES, hidden=True):
        raise EdgekwsError(f"{option} {out}: holds other files ({others}); "
                           "choose an empty or new folder, or one holding only an earlier C export")
    if foreign := [n for n in C_FILES if (out / n).is_file() and not _written_by_export(out / n)]:
        raise EdgekwsError(f"{option} {out}: {', '.join(foreign)} not written by edgekws export (the names of "
                           "its C files, other contents); choose an empty or new folder")


def _written_by_export(path: Path) -> bool:
    """An earlier C export's file: model.bin starts with the blob's magic, the sources with the banner."""
    from edgekws.export.c import BANNER, MAGIC

    want = MAGIC.to_bytes(4, "little") if path.suffix == ".bin" else BANNER.encode()
    try:
        with open(path, "rb") as f:
            return f.read(len(want)) == want
    except OSError:
        return False


def register(sub) -> None:
    p = sub.add_parser("export", help="ONNX models and C arrays for the firmware",
                       description="Export a (quantized) model bundle to ONNX and/or C data for firmware/.")
    p.add_argument("model", help="model bundle folder")
    p.add_argument("--onnx", action="store_true", help="write model.onnx and model.int8.onnx into the bundle")
    p.add_argument("--c", nargs="?", const="", default=None, metavar="DIR",
                   help="write model.bin and ekws_model_data.c/.h into DIR (default MODEL/c)")
    from edgekws.export.targets import add_arguments
    add_arguments(p)  # --target cortex-m4|pi, --out, --audio
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edgekws.bundle import Bundle
    from edgekws.export.c import arena_layout
    from edgekws.quant import load_quantized

    if args.target == "host" and args.c is not None and args.out:
        raise EdgekwsError("--c and --out both name the folder of --target host; give one of them")
    c_option = "--c"
    if args.target == "host" and args.c is None:  # the host target is the C arrays: --out is their folder
        args.c, args.out, c_option = args.out or "", None, "--out"
    if args.out and args.target in (None, "host"):
        raise EdgekwsError("--out is the folder of a --target project (cortex-m4, pi, host); "
                           "for C arrays alone use --c DIR")
    if args.audio and args.target != "cortex-m4":
        raise EdgekwsError("--audio is the test audio of --target cortex-m4; the other targets embed none")
    if not args.onnx and args.c is None and args.target in (None, "host"):
        raise EdgekwsError("nothing to do; pass --onnx, --c [DIR] and/or --target cortex-m4|pi")
    bundle = Bundle.load(args.model)
    if args.target == "cortex-m4":   # before any file is written
        from edgekws.export.targets import check_cortex_m_classes

        check_cortex_m_classes(len(bundle.labels))
    if args.c:
        check_c_folder(Path(args.c), bundle, c_option)
    if args.onnx:
        for name, size in export_onnx(bundle).items():
            print(f"{bundle.path / name}: {size:,} bytes")
    if args.c is not None:
        out_dir = Path(args.c) if args.c else bundle.path / "c"
        sizes = export_c_dir(bundle, out_dir)
        _, arena = arena_layout(load_quantized(bundle))
        print(f"{out_dir}: {', '.join(f'{k} {v:,} B' for k, v in sizes.items())}; model blob "
              f"{sizes['model.bin']:,} bytes of flash, arena {arena:,} bytes of RAM")
    from edgekws.export.targets import run_target
    run_target(args, bundle)
    return 0
