#!/usr/bin/env python3
"""Add WORLD-vocoder voice variants of one engine's speakers to a synthesized dataset.

    python tools/world_variants.py DATA OUT --variants K [--engine espeak] [--seed S] [--jobs N]
    python tools/world_variants.py data/ja160 data/ja160v3 --variants 3 --jobs 2

DATA: DATA/<word>/<speaker>_nohash_<n>.wav (16 kHz mono), DATA/_background_noise_/*.wav and
top-level files (synth_manifest.json, commands.txt, ...). OUT becomes a dataset folder holding
* a symlink to every file of DATA below a folder (all words, all speakers, the noise) and a copy of
  every top-level file;
* for every speaker of --engine (id prefix `espk` or `ojt`, see edgekws.voices.engine_of) and every
  k < K, a new speaker `<prefix>w<k>_<rest>` (espk0012 -> espkw0_0012, espkw1_0012, ...) speaking
  all of that speaker's clips, resynthesized (edgekws.synth.world) with ONE WorldVoice drawn from
  (seed, k, speaker id), so each variant is a consistent new voice of the same engine;
* world_variants.json: the arguments, every new speaker's WorldVoice and the files written here.
Variant ids ignore the hash-rule split of their source speaker (a variant of a test speaker may
train): use this for levers measured on another engine or on the judging set; `edgekws synth
--world K` is the product path and keeps every variant in its source's split.
Same DATA and seed give byte-identical files, whatever --jobs. Re-running into an OUT made by this
tool first removes the files listed in its world_variants.json (and nothing else); any other
non-empty OUT is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekws.cliargs import positive_int, seed  # noqa: E402
from edgekws.data import speaker_of  # noqa: E402
from edgekws.errors import EdgekwsError  # noqa: E402
from edgekws.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402
from edgekws.synth import world  # noqa: E402
from edgekws.voices import ENGINE_PREFIX, engine_of  # noqa: E402

RECORD = "world_variants.json"


def variant_id(speaker: str, prefix: str, k: int) -> str:
    """'espk0012', 'espk', 3 -> 'espkw3_0012' (same engine prefix, unique per speaker and k)."""
    return f"{prefix}w{k}_{speaker[len(prefix):]}"


def variant_voice(seed: int, speaker: str, k: int) -> world.WorldVoice:
    return world.WorldVoice.random(np.random.default_rng([seed, k, zlib.crc32(speaker.encode())]))


def _clear(out: Path) -> None:
    """Make OUT ready: create it, or remove what a previous run listed; refuse a foreign folder."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    rec = out / RECORD
    if not rec.is_file():
        if any(out.iterdir()):
            raise EdgekwsError(f"{out}: not empty and not made by world_variants ({RECORD} missing)")
        return
    try:
        files = json.loads(rec.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise EdgekwsError(f"{rec}: unreadable; remove {out} by hand") from None
    for rel in files:
        p = out / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
    rec.unlink()


def make_variants(data, out, variants: int, engine: str = "espeak", seed: int = 0, jobs: int = 1) -> dict:
    """Write OUT as described in the module docstring. Returns the record written to OUT/RECORD."""
    data, out = Path(data).resolve(), Path(out).absolute()
    if engine not in ENGINE_PREFIX:
        raise EdgekwsError(f"--engine: unknown engine {engine!r} (choose from {', '.join(ENGINE_PREFIX)})")
    if variants < 1 or jobs < 1:
        raise EdgekwsError("--variants and --jobs must be at least 1")
    if not data.is_dir():
        raise EdgekwsError(f"{data}: dataset folder does not exist")
    if out.resolve() == data or data in out.resolve().parents:
        raise EdgekwsError(f"{out}: must not be DATA or inside it")
    if out.exists() and not out.is_dir():
        raise EdgekwsError(f"{out}: is a file, not a folder")
    world._pyworld()                                   # fail early if pyworld is missing
    prefix = ENGINE_PREFIX[engine]
    files = sorted(p for p in data.rglob("*") if p.is_file() and not p.name.startswith("."))
    clips = [p for p in files if p.suffix == ".wav" and len(p.relative_to(data).parts) == 2
             and not p.parent.name.startswith(("_", "."))]
    speakers = {speaker_of(p.name) for p in clips}
    ours = sorted(s for s in speakers if s.startswith(prefix) and engine_of(s) == engine)
    if not ours:   # e.g. a person's recordings: nothing to vary, and an empty result is no result
        raise EdgekwsError(f"{data}: no clips of {engine} speakers (file names {prefix}…_nohash_…) to make variants of")
    new = {(s, k): variant_id(s, prefix, k) for s in ours for k in range(variants)}
    taken = sorted(set(new.values()) & speakers)
    if taken:
        raise EdgekwsError(f"{data}: speaker id(s) {taken[:3]} already exist (DATA holds variants already?)")
    voices = {new[key]: variant_voice(seed, *key) for key in new}

    _clear(out)
    written = []
    for p in files:
        rel = p.relative_to(data)
        dst = out / rel
        if len(rel.parts) == 1:
            atomic_write_bytes(dst, p.read_bytes())
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            os.symlink(p.resolve(), dst)
        written.append(rel.as_posix())
    tasks = []
    for p in clips:
        spk = speaker_of(p.name)
        if spk in ours:
            outs = [(str(out / p.parent.name / (new[spk, k] + p.name[len(spk):])), voices[new[spk, k]])
                    for k in range(variants)]
            tasks.append((str(p), outs))
            written += [Path(d).relative_to(out).as_posix() for d, _ in outs]
    record = {"data": str(data), "engine": engine, "variants": variants, "seed": seed,
              "voices": {sid: v.as_dict() for sid, v in sorted(voices.items())}, "files": written}
    atomic_write_text(out / RECORD, json.dumps(record, indent=1) + "\n")   # before the clips: a
    if jobs == 1 or not tasks:                                           # crash leaves a clearable OUT
        n = sum(world.write_variants(src, o) for src, o in tasks)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as ex:
            n = sum(ex.map(world.write_variants, *zip(*tasks), chunksize=max(1, len(tasks) // (8 * jobs))))
    record["clips_written"], record["linked"] = n, len(files)
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("data", help="dataset folder: DATA/<word>/<speaker>_nohash_<n>.wav")
    ap.add_argument("out", help="new dataset folder (symlinks to DATA + the variants)")
    ap.add_argument("--variants", type=positive_int, required=True, help="new voices per original speaker")
    ap.add_argument("--engine", default="espeak", choices=sorted(ENGINE_PREFIX),
                    help="whose speakers get variants (default espeak)")
    ap.add_argument("--seed", type=seed, default=0)
    ap.add_argument("--jobs", type=positive_int, default=1, help="worker processes (default 1)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        r = make_variants(a.data, a.out, a.variants, a.engine, a.seed, a.jobs)
    except EdgekwsError as exc:
        print(f"world_variants: {exc}", file=sys.stderr)
        return 1
    print(f"world_variants: {r['clips_written']} clips written ({len(r['voices'])} new {a.engine} voices), "
          f"{r['linked']} files of {a.data} linked/copied, into {a.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
