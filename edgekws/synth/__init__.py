"""Offline speech synthesis of keyword datasets: eSpeak NG (ctypes) and Open JTalk (pyopenjtalk-plus).

    from edgekws.synth import synthesize_dataset
    synthesize_dataset("data/ja", lang="ja", seed=0)             # full size (160 speakers)
    synthesize_dataset("/tmp/tiny", lang="en", quick=True)       # small, for demos and tests

The engines are optional (`pip install "edgekws[synth]"`) and imported only when used.
"""

from edgekws.synth.generator import MANIFEST, load_noises, read_manifest, synthesize_dataset  # noqa: F401
from edgekws.synth.words import COMMANDS, DEFAULT_ENGINES, ENGINES, LANGS  # noqa: F401
