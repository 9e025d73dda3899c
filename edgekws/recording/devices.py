"""Microphones and speakers through sounddevice (PortAudio): listing, choosing, streaming, playback.

Everything here takes the sounddevice module as an argument (`sd`), so tests pass a fake one and
no test needs audio hardware. `load_sounddevice()` imports the real module lazily and turns a
missing PortAudio library into an actionable MissingDependencyError.

An `AudioSource` is what a recording session reads from: it has a `samplerate` and a
`blocks(seconds)` generator that opens the input, yields float32 mono blocks covering `seconds`,
and closes it. `SoundDeviceSource` is the real one; it raises DeviceError if the device fails or
stops delivering audio (unplugged) instead of hanging.
"""

from __future__ import annotations

import importlib
import queue
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import numpy as np

from edgekws.errors import AudioError, MissingDependencyError

PORTAUDIO_HINT = (
    "  Raspberry Pi OS / Debian / Ubuntu:  sudo apt-get install libportaudio2\n"
    "  Fedora:  sudo dnf install portaudio        macOS:  brew install portaudio\n"
    "then plug in a microphone (on a Pi, a USB one; `arecord -l` lists what ALSA sees) and check\n"
    "that it shows up in `edgekws devices`."
)


class DeviceError(AudioError):
    """An audio device that does not exist, cannot record at the wanted rate, or failed mid-stream."""


class AudioSource(Protocol):
    samplerate: int

    def blocks(self, seconds: float | None) -> Iterator[np.ndarray]:
        """Yield (k,) float32 mono blocks until `seconds` of audio were delivered (None: endless).
        Closing the generator closes the stream."""
        ...


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    hostapi: str
    inputs: int                # max input channels
    outputs: int               # max output channels
    default_samplerate: int
    default_input: bool = False
    default_output: bool = False


def load_sounddevice():
    """The sounddevice module, or MissingDependencyError explaining how to install PortAudio."""
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:  # the wheel is there but the PortAudio shared library is not
        raise MissingDependencyError(
            f"recording and playback need the PortAudio library, which sounddevice cannot load "
            f"({exc}). Install it:\n{PORTAUDIO_HINT}") from None
    except ImportError as exc:
        raise MissingDependencyError(
            f"recording and playback need sounddevice ({exc}): pip install sounddevice, and the "
            f"PortAudio library:\n{PORTAUDIO_HINT}") from None


def _default_pair(sd) -> tuple[int, int]:
    try:
        pair = sd.default.device
        return int(pair[0]), int(pair[1])
    except (TypeError, ValueError, IndexError):
        return -1, -1


def list_devices(sd) -> list[Device]:
    """All devices PortAudio knows, with their default rates and which ones are the defaults."""
    try:
        infos = list(sd.query_devices())
        apis = [a["name"] for a in sd.query_hostapis()]
    except Exception as exc:  # PortAudioError when the audio system is broken
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    din, dout = _default_pair(sd)
    out = []
    for i, d in enumerate(infos):
        idx = int(d.get("index", i))
        api = d.get("hostapi", 0)
        out.append(Device(idx, str(d["name"]), apis[api] if 0 <= api < len(apis) else str(api),
                          int(d["max_input_channels"]), int(d["max_output_channels"]),
                          int(round(float(d["default_samplerate"]))), idx == din, idx == dout))
    return out


def format_devices(devices: list[Device]) -> str:
    """A table of devices; '>' marks the default input, '<' the default output."""
    if not devices:
        return "  (no audio devices found)"
    lines = [f"  {'':2}{'id':>3}  {'in':>3} {'out':>3}  {'rate':>6}  name (host API)"]
    for d in devices:
        mark = (">" if d.default_input else " ") + ("<" if d.default_output else " ")
        lines.append(f"  {mark}{d.index:>3}  {d.inputs:>3} {d.outputs:>3}  {d.default_samplerate:>6}"
                     f"  {d.name} ({d.hostapi})")
    return "\n".join(lines)


def _pick(devices: list[Device], spec: str | None, kind: str) -> Device:
    """Find the device for `spec` (an index, or part of a name; None → the default)."""
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    table = "devices:\n" + format_devices(devices)
    flag = "--device" if kind == "input" else "--output-device"
    if not usable:
        raise DeviceError(f"no {kind} device found; plug in a "
                          f"{'microphone' if kind == 'input' else 'speaker'}.\n{table}")
    if spec is None or spec == "":
        for d in usable:
            if d.default_input if kind == "input" else d.default_output:
                return d
        return usable[0]
    if spec.strip().lstrip("-").isdigit():
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                if d in usable:
                    return d
                raise DeviceError(f"{flag} {spec}: '{d.name}' has no {kind} channels.\n{table}")
        raise DeviceError(f"{flag} {spec}: no device with that id.\n{table}")
    hits = [d for d in usable if spec.lower() in d.name.lower()]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise DeviceError(f"{flag} {spec!r}: no {kind} device name contains it.\n{table}")
    raise DeviceError(f"{flag} {spec!r}: matches several devices "
                      f"({', '.join(f'{d.index}: {d.name}' for d in hits)}); give the id.\n{table}")


def choose_input(sd, spec: str | None = None, rate: int | None = None) -> tuple[Device, int]:
    """Pick the input device and a rate it accepts (default: its own default rate), checked up front."""
    devices = list_devices(sd)
    dev = _pick(devices, spec, "input")
    rate = int(rate) if rate else dev.default_samplerate
    try:
        sd.check_input_settings(device=dev.index, channels=1, dtype="float32", samplerate=rate)
    except Exception as exc:
        raise DeviceError(f"input device {dev.index} '{dev.name}' cannot record mono at {rate} Hz "
                          f"({exc}); its default rate is {dev.default_samplerate} Hz.\n"
                          f"devices:\n{format_devices(devices)}") from None
    return dev, rate


def choose_output(sd, spec: str | None = None) -> Device | None:
    """The playback device, or None when there is none (replay is then unavailable)."""
    devices = list_devices(sd)
    if spec is None and not any(d.outputs for d in devices):
        return None
    return _pick(devices, spec, "output")


class SoundDeviceSource:
    """Mono float32 input from a sounddevice InputStream, one stream per `blocks()` call.

    The PortAudio callback hands copies of its blocks to a queue; the generator reads the queue
    with a timeout, so an unplugged device raises DeviceError instead of blocking forever.
    """

    def __init__(self, sd, device: Device, samplerate: int, *, block_seconds: float = 0.05,
                 timeout: float = 2.0):
        self.sd, self.device, self.samplerate = sd, device, int(samplerate)
        self.blocksize = max(1, int(round(block_seconds * self.samplerate)))
        self.timeout = timeout
        self.overflows = 0

    def blocks(self, seconds: float | None) -> Iterator[np.ndarray]:
        """Yield (blocksize,) float32 blocks for `seconds` (None: until the consumer stops)."""
        need = None if seconds is None else int(round(seconds * self.samplerate))
        q: queue.Queue = queue.Queue()

        def callback(indata, frames, time, status):  # runs on PortAudio's thread
            if status and getattr(status, "input_overflow", False):
                self.overflows += 1
            q.put(np.array(indata[:, 0], dtype=np.float32))

        name = f"input device {self.device.index} '{self.device.name}'"
        try:
            stream = self.sd.InputStream(device=self.device.index, channels=1, dtype="float32",
                                         samplerate=self.samplerate, blocksize=self.blocksize,
                                         callback=callback)
            stream.start()
        except Exception as exc:
            raise DeviceError(f"{name}: cannot start recording ({exc}); is it still connected? "
                              "See `edgekws devices`.") from None
        try:
            got = 0
            while need is None or got < need:
                try:
                    block = q.get(timeout=self.timeout)
                except queue.Empty:
                    raise DeviceError(f"{name}: no audio for {self.timeout:g} s — the device was "
                                      "disconnected or stopped. See `edgekws devices`.") from None
                got += len(block)
                yield block
        finally:
            try:
                stream.stop()
                stream.close()
            except Exception:  # a vanished device may fail to stop; nothing more to do
                pass


def make_player(sd, device: Device | None) -> Callable[[np.ndarray, int], None] | None:
    """A function that plays (n,) int16 or float audio at `sr` on `device` and waits; None if no device."""
    if device is None:
        return None
    from edgekws.audio import resample

    def play(samples: np.ndarray, sr: int) -> None:
        x = np.asarray(samples)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        rate = device.default_samplerate
        try:
            sd.play(resample(x, sr, rate), samplerate=rate, device=device.index)
            sd.wait()
        except Exception as exc:
            raise DeviceError(f"playback on device {device.index} '{device.name}' failed: {exc}") from None

    return play
