"""The `edgekws record` and `edgekws devices` commands: teach edgekws your own voice.

    edgekws record --out DATA [--words yes,no,…] [--lang en|ja] [--takes N] [--speaker NAME]
                   [--device ID] [--rate HZ] [--output-device ID]
    edgekws record --background --seconds S --out DATA
    edgekws devices

The work is in edgekws/recording/; this module parses arguments and wires the real sounddevice
input, playback and terminal into it. sounddevice is imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path

from edgekws import cliargs
from edgekws.errors import EdgekwsError
from edgekws.data import BACKGROUND_DIR, DEFAULT_WORDS, parse_words
from edgekws.recording.console import Console
from edgekws.recording.devices import (DeviceError, SoundDeviceSource, choose_input, choose_output,
                                       format_devices, list_devices, load_sounddevice, make_player)
from edgekws.recording.layout import PROMPTS, check_words, speaker_for
from edgekws.recording.session import record_background, run_session


def run_record(args) -> int:
    from edgekws.fileio import cannot_make_folder, not_a_folder

    # the arguments first: a mistake in them is told before anything about the audio device
    if args.background and (args.words is not None or args.takes is not None):
        raise EdgekwsError("--words and --takes are for word recording; --background records noise "
                           "for --seconds")
    if not args.background and args.seconds is not None:
        raise EdgekwsError("--seconds is for --background; words are recorded in takes (--takes)")
    args.takes = 5 if args.takes is None else args.takes
    args.seconds = 60.0 if args.seconds is None else args.seconds
    words = None if args.background else check_words(parse_words(args.words) or list(DEFAULT_WORDS))
    if Path(args.out).exists() and (problem := not_a_folder(args.out, "folder")):
        raise EdgekwsError(f"--out {args.out}: {problem}")
    # every folder a take or a noise file will go to, before the first take is spoken
    for folder in [BACKGROUND_DIR] if args.background else words:
        if problem := cannot_make_folder(Path(args.out) / folder):
            raise EdgekwsError(f"--out {args.out}: cannot record into it ({problem})")
    speaker, note = speaker_for(args.out, args.speaker)
    sd = load_sounddevice()
    device, rate = choose_input(sd, args.device, args.rate)
    source = SoundDeviceSource(sd, device, rate)
    console = Console()
    if note:
        console.say(note)
    console.say(f"Microphone: {device.index} '{device.name}' at {rate} Hz")
    if args.background:
        record_background(args.out, args.seconds, source=source, speaker=speaker, console=console)
        return 0
    try:
        play = make_player(sd, choose_output(sd, args.output_device))
    except DeviceError as exc:  # no usable speaker: record anyway, without replay
        if args.output_device is not None:
            raise
        console.say(f"(replay unavailable: {exc})")
        play = None
    run_session(args.out, words, source=source, speaker=speaker, takes=args.takes,
                          lang=args.lang, console=console, play=play)
    if source.overflows:
        console.say(f"note: the input overflowed {source.overflows} time(s); "
                    "a busy machine may drop audio (close other programs)")
    return 0


def run_devices(args) -> int:
    sd = load_sounddevice()
    print("Audio devices ('>' default input, '<' default output; rate = default rate in Hz):")
    print(format_devices(list_devices(sd)))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "record", help="guided recording of your own voice (or background noise) into a dataset",
        description="Records takes of each word with a count-in and a level meter, checks them "
                    "(clipping, loudness, speech found), keeps the best 1 s and writes "
                    "DATA/<word>/<speaker>_nohash_<n>.wav at 16 kHz. Run again to resume.")
    p.add_argument("--out", required=True, metavar="DATA", help="dataset folder (created if needed)")
    p.add_argument("--words", help=f"comma-separated word folders (default: {','.join(DEFAULT_WORDS)})")
    p.add_argument("--lang", choices=sorted(PROMPTS), default="en",
                   help="language to prompt the default command words in (folders keep the "
                        "English names, e.g. --lang ja shows はい for 'yes')")
    p.add_argument("--takes", type=cliargs.positive_int, default=None, help="takes per word in total (default 5)")
    p.add_argument("--speaker", metavar="NAME",
                   help="your name; gives a stable speaker id (default: your login name)")
    p.add_argument("--device", metavar="ID", help="input device id or part of its name (see `edgekws devices`)")
    p.add_argument("--rate", type=cliargs.positive_int, metavar="HZ",
                   help="input rate (default: the device's default rate; resampled to 16 kHz)")
    p.add_argument("--output-device", metavar="ID", help="playback device for replay")
    p.add_argument("--background", action="store_true",
                   help="record background noise into DATA/_background_noise_/ instead of words")
    p.add_argument("--seconds", type=cliargs.positive_float, default=None,
                   help="with --background: how long to record (default 60)")
    p.set_defaults(func=run_record)

    d = sub.add_parser("devices", help="list audio input and output devices",
                       description="Lists the devices PortAudio sees, with channels and default rates.")
    d.set_defaults(func=run_devices)
