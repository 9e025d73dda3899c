"""Recording people's voices with sounddevice: guided sessions, take checks, devices, terminal UI.

    layout.py   speaker ids, file names, resumable numbering, prompts per language
    takes.py    clipping / loudness / energy VAD checks and the best 1 s of a take
    devices.py  sounddevice (lazy), device choice and validation, input source, playback
    console.py  prompts, count-in, level meter (injected input/output/sleep)
    session.py  run_session (words × takes) and record_background
The `edgekws record` / `edgekws devices` commands live in edgekws/record.py.
"""

from edgekws.recording.devices import (AudioSource, Device, DeviceError, SoundDeviceSource,  # noqa: F401
                                       choose_input, choose_output, format_devices, list_devices,
                                       load_sounddevice, make_player)
from edgekws.recording.layout import speaker_id  # noqa: F401
from edgekws.recording.session import SessionSummary, record_background, run_session  # noqa: F401
from edgekws.recording.takes import TakeCriteria, TakeVerdict, check_take  # noqa: F401
