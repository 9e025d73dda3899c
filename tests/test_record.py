"""Recording sessions without hardware: a scripted audio source fed from synthesized speech-like
signals and silence, scripted key presses, and a fake sounddevice module for device handling."""

import importlib
import io
import re
import threading
import unicodedata
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgekws import cli
from edgekws.audio import read_wav
from edgekws.data import speaker_of, which_split
from edgekws.errors import EdgekwsError, MissingDependencyError
from edgekws.recording import devices as devmod
from edgekws.recording.console import Console, meter_bar
from edgekws.recording.devices import DeviceError, SoundDeviceSource, choose_input, load_sounddevice
from edgekws.recording.layout import check_words, prompt_for, speaker_id
from edgekws.recording.session import record_background, run_session
from edgekws.recording.takes import check_take

# ---------------------------------------------------------------- synthesized signals


def word(sr, *, seed=0, seconds=1.5, at=0.5, dur=0.45, amp=0.4, noise=1e-3, f0=140.0):
    """A speech-like take: a harmonic tone (f0 + 5 overtones, slight vibrato) under a two-syllable
    envelope, starting at `at` s, over white background noise. (n,) float32 at `sr`."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = rng.normal(0.0, noise, n)
    seg = (t >= at) & (t < at + dur)
    tt = t[seg] - at
    env = np.sin(np.pi * tt / dur) ** 2 * (0.55 + 0.45 * np.cos(2 * np.pi * tt * 2 / dur))
    phase = 2 * np.pi * f0 * tt + 0.3 * np.sin(2 * np.pi * 5 * tt)
    voiced = sum(np.sin(h * phase) / h for h in range(1, 7))
    x[seg] += amp * env * voiced / np.abs(voiced).max()
    return np.clip(x, -1, 1).astype(np.float32)


def silence(sr, *, seed=0, seconds=1.5, noise=1e-3):
    return np.random.default_rng(seed).normal(0.0, noise, int(round(seconds * sr))).astype(np.float32)


def clipped(sr, seed=0):
    return np.clip(word(sr, seed=seed) * 5, -1, 1)


def quiet(sr, seed=0):
    return word(sr, seed=seed, amp=0.004, noise=1e-5)


class Fail:
    """A scripted stream that delivers `after` seconds of silence, then raises `exc`."""

    def __init__(self, exc, after=0.3):
        self.exc, self.after = exc, after


class ScriptedSource:
    """An AudioSource playing one scripted signal (or Fail) per take, in blocks of `block` frames."""

    def __init__(self, takes, samplerate=16000, block=800):
        self.takes, self.samplerate, self.block = list(takes), samplerate, block
        self.open_streams = 0
        self.opened = 0

    def blocks(self, seconds):
        item = self.takes.pop(0)
        self.open_streams += 1
        self.opened += 1
        try:
            if isinstance(item, Fail):
                x = silence(self.samplerate, seconds=item.after)
            else:
                x = item
            for i in range(0, len(x), self.block):
                yield x[i:i + self.block]
            if isinstance(item, Fail):
                raise item.exc
        finally:
            self.open_streams -= 1


class Keys:
    """Scripted answers to prompts; records every prompt shown."""

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        if not self.answers:
            raise AssertionError(f"unexpected prompt: {prompt!r}")
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


def console(keys, out):
    return Console(ask=keys, out=out, sleep=lambda s: None)


def temp_files(root):
    return [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


# ---------------------------------------------------------------- speaker ids, words, prompts


def test_speaker_id_is_stable_and_safe_for_the_hash_split():
    assert speaker_id("Alice Smith") == "alice-smith"
    assert speaker_id("  José  ") == "jose"
    sid = speaker_id("bob_nohash_1")
    assert sid == "bob-nohash-1" and "_" not in sid
    ja = speaker_id("たろう")
    assert ja.startswith("spk-") and ja == speaker_id("たろう") and ja != speaker_id("はなこ")
    # names that lose characters on the way to ASCII, or are cut, keep a hash of the whole name:
    # two people never share an id (the second one's session would find the first one's takes)
    for a, b in [("たろう2", "はなこ2"), ("山田A", "田中A"),
                 ("Maria Fernanda Gonzalez Rodriguez", "Maria Fernanda Gonzalez Rodrigues")]:
        ia, ib = speaker_id(a), speaker_id(b)
        assert ia != ib and ia == speaker_id(a) and len(ia) <= 32 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", ia)
    assert speaker_id("たろう2").startswith("2-") and speaker_id("Maria Fernanda Gonzalez Rodriguez").startswith(
        "maria-fernanda-gonzalez-")
    assert speaker_id("x" * 32) == "x" * 32
    # one person, one id: a name pasted in NFD form (macOS file names), in other case or full-width
    name = "José たろう"
    assert speaker_id(unicodedata.normalize("NFD", name)) == speaker_id(name)
    assert speaker_id("Søren") == speaker_id("SØREN") == speaker_id("søren")
    assert speaker_id("たろう２") == speaker_id("たろう2")



def test_a_speaker_whose_takes_have_the_id_of_earlier_sessions_keeps_it(tmp_path):
    """Hashed ids took the name as typed until session 25: 'Straße' was 'strae-880c6886'. Their takes
    are found and added to, rather than a second speaker starting over (and maybe in another split)."""
    from edgekws.recording.layout import speaker_for

    assert speaker_for(tmp_path, "Straße") == (speaker_id("Straße"), None)      # nothing recorded yet
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "strae-880c6886_nohash_0.wav").write_bytes(b"RIFF")
    sid, note = speaker_for(tmp_path, "Straße")
    assert sid == "strae-880c6886" != speaker_id("Straße")
    assert note == "speaker 'Straße': recording as 'strae-880c6886', the id of this name's earlier takes"
    assert speaker_for(tmp_path, "alice") == ("alice", None)                      # unhashed ids never changed
    with pytest.raises(EdgekwsError, match="--speaker"):
        speaker_id("   ")
    # all of one speaker's files land in one split, and the data loader reads the id back
    names = [f"{sid}_nohash_{n}.wav" for n in range(20)]
    assert {speaker_of(n) for n in names} == {sid}
    assert len({which_split(n) for n in names}) == 1


def test_words_are_checked_and_prompted_per_language():
    assert check_words(["yes", "no"]) == ["yes", "no"]
    for bad in (["_silence_"], ["a/b"], ["yes", "yes"], []):
        with pytest.raises(EdgekwsError, match="--words"):
            check_words(bad)
    # folders that would break the dataset or could not be written, refused before the microphone opens
    with pytest.raises(EdgekwsError, match=r"--words: \['testing_list.txt'\] is the name of a dataset's split list"):
        check_words(["yes", "testing_list.txt"])
    with pytest.raises(EdgekwsError, match="a folder name is at most 255 bytes, this one is 258"):
        check_words(["あ" * 86])
    assert check_words(["あ" * 85]) == ["あ" * 85]
    assert prompt_for("yes", "ja") == "はい" and prompt_for("yes", "en") == "yes"
    assert prompt_for("banana", "ja") == "banana"


# ---------------------------------------------------------------- take checks


@pytest.mark.parametrize("sr", [16000, 44100, 48000])
def test_good_take_keeps_the_second_around_the_speech(sr):
    raw = word(sr, at=0.6)  # speech 0.6-1.05 s of a 1.5 s take: many 1 s windows hold all of it
    v = check_take(raw, sr)
    assert v.ok and v.reason == "ok", v.message
    assert v.clip.dtype == np.int16 and v.clip.shape == (16000,)
    # the kept second holds (almost) all of the word's energy, and the word sits near its middle
    full = word(16000, at=0.6)
    speech_e = float(np.sum(full[9600:9600 + 7200].astype(np.float64) ** 2)) * 32767**2
    assert float(np.sum(v.clip.astype(np.float64) ** 2)) > 0.97 * speech_e
    env = np.convolve(v.clip.astype(np.float64) ** 2, np.ones(800), "same")
    centre = np.sum(np.arange(16000) * env) / env.sum()
    assert abs(centre - 8000) < 800


@pytest.mark.parametrize("raw, reason", [
    (clipped(48000), "clipped"),
    (quiet(48000), "too quiet"),
    (silence(48000), "no speech"),
    (np.zeros(72000, np.float32), "no speech"),
    (word(48000, at=0.0), "cut off"),
    (word(48000, at=1.2, dur=0.4), "cut off"),
    (word(48000, at=0.1, dur=1.25), "too long"),
])
def test_bad_takes_are_rejected_with_a_reason(raw, reason):
    v = check_take(raw, 48000)
    assert not v.ok and v.reason == reason and v.clip is None
    assert len(v.message) > 20  # an explanation, not just a code


def test_a_click_is_not_speech():
    x = silence(16000)
    x[8000:8030] = 0.8
    assert check_take(x, 16000).reason == "no speech"


# ---------------------------------------------------------------- whole sessions


def test_whole_session_keeps_good_takes_and_explains_rejects(tmp_path):
    sr = 48000
    played = []
    source = ScriptedSource([
        word(sr, seed=1),                      # yes: good -> keep
        clipped(sr, 2),                        # yes: clipped -> again
        word(sr, seed=3, f0=180),              # yes: good -> replay, keep
        quiet(sr, 4),                          # no: too quiet -> again
        silence(sr, seed=5),                   # no: nothing said -> again
        word(sr, seed=6),                      # no: good -> redo
        word(sr, seed=7, at=0.3),              # no: good -> keep
        word(sr, seed=8),                      # no: good -> quit (dropped)
    ], samplerate=sr)
    keys = Keys(["", "",  "", "p", "",          # yes
                 "", "", "", "r", "", "q"])      # no
    out = tmp_path / "DATA"
    text = io.StringIO()
    summary = run_session(out, ["yes", "no"], source=source, speaker="alice", takes=2,
                          console=console(keys, text), play=lambda x, r: played.append((x.copy(), r)))
    assert not keys.answers and not source.takes and source.open_streams == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert files == ["no/alice_nohash_0.wav", "yes/alice_nohash_0.wav", "yes/alice_nohash_1.wav"]
    assert temp_files(out) == []
    for f in files:
        with wave.open(str(out / f)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 16000)
    # what was replayed is exactly what was saved
    assert len(played) == 1 and played[0][1] == 16000
    np.testing.assert_array_equal(played[0][0], read_wav(out / "yes/alice_nohash_1.wav"))
    yes, no = summary.words
    assert (len(yes.saved), dict(yes.rejected)) == (2, {"clipped": 1})
    assert (len(no.saved), dict(no.rejected)) == (1, {"too quiet": 1, "no speech": 1, "redone": 1})
    assert summary.stopped == "quit"
    log = text.getvalue()
    assert "rejected: clipped" in log and "rejected: too quiet" in log and "rejected: no speech" in log
    assert "Summary" in log and "Still to record: no" in log and "48000 Hz" in log
    assert "3.. 2.. 1.. speak!" in log


def test_resume_continues_numbering_and_never_overwrites(tmp_path):
    out = tmp_path / "DATA"
    (out / "yes").mkdir(parents=True)
    (out / "no").mkdir()
    sentinel = b"not a real wav, must survive"
    (out / "yes/alice_nohash_0.wav").write_bytes(sentinel)
    (out / "yes/alice_nohash_3.wav").write_bytes(sentinel)
    (out / "yes/bob_nohash_7.wav").write_bytes(sentinel)  # another speaker does not count
    keys = Keys(["", "", "",     # yes: two takes to go (2 of 4 on disk)
                 "s"])           # no: skip the word
    source = ScriptedSource([word(44100, seed=s) for s in (1, 2)], samplerate=44100)
    summary = run_session(out, ["yes", "no"], source=source, speaker="alice", takes=4,
                          console=console(keys, io.StringIO()))
    assert (out / "yes/alice_nohash_0.wav").read_bytes() == sentinel
    assert (out / "yes/alice_nohash_3.wav").read_bytes() == sentinel
    assert sorted(p.name for p in (out / "yes").glob("alice_*")) == [
        "alice_nohash_0.wav", "alice_nohash_3.wav", "alice_nohash_4.wav", "alice_nohash_5.wav"]
    assert summary.words[0].before == 2 and summary.words[0].total == 4
    assert summary.words[1].skipped and summary.stopped is None
    # a third run has nothing left for 'yes' and asks only about 'no'
    text = io.StringIO()
    keys = Keys(["q"])
    run_session(out, ["yes", "no"], source=ScriptedSource([]), speaker="alice", takes=4,
                console=console(keys, text))
    assert "'yes' already has 4 take(s)" in text.getvalue() and not keys.answers



def test_a_file_that_appears_during_a_take_is_not_overwritten(tmp_path):
    """Another process (or a second session) writes the number this take was going to get."""
    out = tmp_path / "DATA"
    intruder = out / "yes" / "alice_nohash_0.wav"

    class Racing(ScriptedSource):
        def blocks(self, seconds):
            intruder.parent.mkdir(parents=True, exist_ok=True)
            intruder.write_bytes(b"someone else's take")
            yield from super().blocks(seconds)

    run_session(out, ["yes"], source=Racing([word(16000)]), speaker="alice", takes=1,
                console=console(Keys(["", ""]), io.StringIO()))
    assert intruder.read_bytes() == b"someone else's take"
    assert read_wav(out / "yes/alice_nohash_1.wav").shape == (16000,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rate=st.sampled_from([16000, 22050, 44100, 48000]),
       amp=st.floats(0.0, 2.0), at=st.floats(0.0, 1.4), dur=st.floats(0.01, 1.5))
def test_check_take_always_gives_a_verdict(seed, rate, amp, at, dur):
    raw = word(rate, seed=seed, amp=amp, at=at, dur=dur, noise=amp / 50)
    v = check_take(raw, rate)
    assert v.reason in {"ok", "clipped", "no speech", "too quiet", "cut off", "too long"}
    assert v.ok == (v.reason == "ok") and v.message
    if v.ok:
        assert v.clip.dtype == np.int16 and v.clip.shape == (16000,)
        assert 0.01 < at + dur and at < 1.5 and amp > 0.03

@pytest.mark.parametrize("exc, expected", [
    (DeviceError("input device 2 'USB mic': no audio for 2 s"), DeviceError),
    (KeyboardInterrupt(), KeyboardInterrupt),
])
def test_device_loss_or_ctrl_c_mid_take_loses_nothing(tmp_path, exc, expected):
    out = tmp_path / "DATA"
    source = ScriptedSource([word(48000, seed=1), Fail(exc, after=0.4)], samplerate=48000)
    text = io.StringIO()
    with pytest.raises(expected):
        run_session(out, ["yes"], source=source, speaker="alice", takes=3,
                    console=console(Keys(["", ""]), text))
    assert [p.name for p in out.rglob("*.wav")] == ["alice_nohash_0.wav"]
    assert read_wav(out / "yes/alice_nohash_0.wav").shape == (16000,)
    assert temp_files(out) == [] and source.open_streams == 0
    log = text.getvalue()
    assert "Stopped early" in log and "1 new take(s) saved" in log


def test_a_take_that_cannot_be_written_stops_with_the_summary(tmp_path, monkeypatch):
    from edgekws.fileio import OutputError
    from edgekws.recording import session

    out = tmp_path / "DATA"
    writes = []

    def write_wav(path, *a, **k):   # the disk fills up at the second take
        writes.append(path)
        if len(writes) == 2:
            raise OutputError(f"{path}: cannot write (No space left on device)")
        return real(path, *a, **k)

    real = session.write_wav
    monkeypatch.setattr(session, "write_wav", write_wav)
    source = ScriptedSource([word(48000, seed=1), word(48000, seed=2)], samplerate=48000)
    text = io.StringIO()
    with pytest.raises(EdgekwsError, match="No space left"):
        run_session(out, ["yes", "no"], source=source, speaker="alice", takes=1,
                    console=console(Keys(["", "", "", ""]), text))
    assert read_wav(out / "yes/alice_nohash_0.wav").shape == (16000,)
    log = text.getvalue()
    assert "Stopped early (error); every kept take is on disk." in log and "1 new take(s) saved" in log


def test_ctrl_c_or_eof_at_a_prompt(tmp_path):
    out = tmp_path / "DATA"
    with pytest.raises(KeyboardInterrupt):
        run_session(out, ["yes"], source=ScriptedSource([word(16000)]), speaker="a", takes=2,
                    console=console(Keys(["", KeyboardInterrupt()]), io.StringIO()))
    assert list(out.rglob("*.wav")) == []  # the take was never accepted
    # stdin closed at the second take's "Keep it?": quit, the second take is not saved
    summary = run_session(out, ["yes"], source=ScriptedSource([word(16000), word(16000, seed=1)]),
                          speaker="a", takes=2, console=console(Keys(["", "", EOFError()]), io.StringIO()))
    assert summary.stopped == "quit" and len(summary.saved) == 1


def test_a_stream_that_ends_early_is_a_device_error(tmp_path):
    source = ScriptedSource([word(16000)[:8000]])
    with pytest.raises(DeviceError, match="ended after 0.50 s"):
        run_session(tmp_path, ["yes"], source=source, speaker="a", takes=1,
                    console=console(Keys([""]), io.StringIO()))


def test_background_recording_in_segments_and_on_interrupt(tmp_path):
    out = tmp_path / "DATA"
    source = ScriptedSource([silence(44100, seconds=2.5)], samplerate=44100)
    files = record_background(out, 2.5, source=source, speaker="alice", console=Console(out=io.StringIO()),
                              segment_seconds=1.0)
    assert [p.name for p in files] == [f"alice_background_{i}.wav" for i in range(3)]
    assert [read_wav(p).shape[0] for p in files] == [16000, 16000, 8000]
    assert all(p.parent.name == "_background_noise_" for p in files)
    # interrupted after 1.5 s: what was recorded is kept, numbering continues
    source = ScriptedSource([Fail(KeyboardInterrupt(), after=1.5)], samplerate=44100)
    with pytest.raises(KeyboardInterrupt):
        record_background(out, 10, source=source, speaker="alice", console=Console(out=io.StringIO()))
    assert read_wav(out / "_background_noise_/alice_background_3.wav").shape == (24000,)
    assert temp_files(out) == []
    with pytest.raises(EdgekwsError, match="--seconds"):
        record_background(out, 0, source=source, speaker="alice")


# ---------------------------------------------------------------- console


def test_meter_and_choices():
    assert meter_bar(1.0).endswith("CLIP") and meter_bar(1.0).count("#") == 30
    assert meter_bar(0.0).count("#") == 0 and "-99" not in meter_bar(0.001)
    text = io.StringIO()
    keys = Keys(["x", "P", "redo"])
    c = console(keys, text)
    assert c.choose("?", {"": "keep", "p": "replay", "r": "redo"}) == "p"
    assert c.choose("?", {"": "keep", "p": "replay", "r": "redo"}) == "r"
    assert "'x'? choose one of" in text.getvalue()


# ---------------------------------------------------------------- devices (fake sounddevice)


class FakeStream:
    """A sounddevice.InputStream look-alike: a thread feeds `signal` to the callback in blocks;
    after `die_after` blocks it goes silent, as an unplugged USB microphone does."""

    def __init__(self, sd, device, channels, dtype, samplerate, blocksize, callback):
        assert channels == 1 and dtype == "float32"
        self.sd, self.blocksize, self.callback, self.samplerate = sd, blocksize, callback, samplerate
        self.signal = sd.signals.pop(0) if sd.signals else silence(samplerate, seconds=5)
        self.stopped = threading.Event()
        sd.streams.append(self)

    def start(self):
        if self.sd.fail_start:
            raise self.sd.PortAudioError("Error opening InputStream: Device unavailable")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        for k, i in enumerate(range(0, len(self.signal), self.blocksize)):
            if self.stopped.is_set() or (self.sd.die_after is not None and k >= self.sd.die_after):
                return
            block = self.signal[i:i + self.blocksize]
            self.callback(block.reshape(-1, 1), len(block), None, None)

    def stop(self):
        self.stopped.set()

    def close(self):
        self.closed = True


class FakeSD:
    """The parts of the sounddevice module edgekws uses."""

    class PortAudioError(Exception):
        pass

    def __init__(self, devices, default=(1, 2), rates=None):
        self.devices, self.rates = devices, rates or {}
        self.default = type("Default", (), {"device": default})()
        self.signals, self.streams, self.played = [], [], []
        self.die_after, self.fail_start = None, False

    def query_devices(self):
        return [dict(d, index=i) for i, d in enumerate(self.devices)]

    def query_hostapis(self):
        return [{"name": "ALSA"}]

    def check_input_settings(self, device, channels, dtype, samplerate):
        if samplerate not in self.rates.get(device, [self.devices[device]["default_samplerate"]]):
            raise self.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def InputStream(self, **kw):
        return FakeStream(self, **kw)

    def play(self, x, samplerate, device):
        self.played.append((np.asarray(x), samplerate, device))

    def wait(self):
        pass


def dev(name, ins, outs, rate):
    return {"name": name, "hostapi": 0, "max_input_channels": ins, "max_output_channels": outs,
            "default_samplerate": float(rate)}


def laptop():
    return FakeSD([dev("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 0, 44100),
                   dev("USB PnP Sound Device: Audio (hw:1,0)", 1, 0, 48000),
                   dev("HDMI 0", 0, 8, 48000),
                   dev("USB Headset", 1, 2, 16000)], default=(1, 2), rates={1: [48000, 44100]})


def test_choose_input_validates_device_and_rate_up_front():
    sd = laptop()
    d, rate = choose_input(sd)
    assert (d.index, rate) == (1, 48000)  # default input at its own default rate
    assert choose_input(sd, "alc3246")[0].index == 0
    assert choose_input(sd, "1", 44100) == (d, 44100)
    for spec, rate, msg in [("7", None, "no device with that id"),
                            ("2", None, "has no input channels"),
                            ("USB", None, "matches several devices"),
                            ("banana", None, "no input device name contains"),
                            ("1", 16000, "cannot record mono at 16000 Hz")]:
        with pytest.raises(DeviceError, match=msg) as e:
            choose_input(sd, spec, rate)
        assert "USB PnP Sound Device" in str(e.value) and "HDMI 0" in str(e.value)  # the device list
    with pytest.raises(DeviceError, match="no input device found"):
        choose_input(FakeSD([dev("HDMI 0", 0, 8, 48000)], default=(-1, 0)))


def test_sounddevice_source_resamples_nothing_and_detects_unplugging():
    sd = laptop()
    d, rate = choose_input(sd)
    sd.signals = [word(rate)]
    src = SoundDeviceSource(sd, d, rate, timeout=0.3)
    x = np.concatenate(list(src.blocks(1.5)))
    assert len(x) >= 72000
    np.testing.assert_array_equal(x[:72000], word(rate))
    assert sd.streams[0].stopped.is_set() and sd.streams[0].closed
    endless = src.blocks(None)  # `listen --mic` streams until it stops reading
    assert sum(len(next(endless)) for _ in range(100)) == 100 * src.blocksize
    endless.close()
    assert sd.streams[1].stopped.is_set()
    sd.die_after = 5
    with pytest.raises(DeviceError, match="disconnected"):
        list(src.blocks(1.5))
    assert sd.streams[2].stopped.is_set()
    sd.die_after, sd.fail_start = None, True
    with pytest.raises(DeviceError, match="cannot start recording"):
        list(src.blocks(1.5))


def test_cli_record_session_through_fake_sounddevice(tmp_path, monkeypatch, capsys):
    sd = laptop()
    sd.signals = [word(48000, seed=1), word(48000, seed=2)]
    monkeypatch.setattr("edgekws.record.load_sounddevice", lambda: sd)
    monkeypatch.setattr("builtins.input", Keys(["", "", "p", ""]))
    monkeypatch.setattr("time.sleep", lambda s: None)
    rc = cli.main(["record", "--out", str(tmp_path), "--words", "yes", "--takes", "2",
                   "--speaker", "Test User", "--lang", "ja"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "yes").iterdir()) == [
        "test-user_nohash_0.wav", "test-user_nohash_1.wav"]
    out = capsys.readouterr().out
    assert "はい" in out and "Summary" in out and "USB PnP" in out
    (x, rate, device), = sd.played
    assert (rate, device) == (48000, 2) and len(x) == 48000  # replayed at the default output's rate


def test_cli_device_failure_and_background(tmp_path, monkeypatch, capsys):
    sd = laptop()
    monkeypatch.setattr("edgekws.record.load_sounddevice", lambda: sd)
    assert cli.main(["record", "--out", str(tmp_path), "--words", "yes", "--device", "9"]) == 2
    err = capsys.readouterr().err
    assert "--device 9: no device with that id" in err and "HDMI 0" in err and "Traceback" not in err
    sd.signals = [silence(48000, seconds=2)]
    assert cli.main(["record", "--background", "--seconds", "2", "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "_background_noise_").glob("*_background_0.wav"))) == 1
    assert cli.main(["devices"]) == 0
    listing = capsys.readouterr().out
    default_in = [line for line in listing.splitlines() if line.startswith("  >")]
    assert "ALC3246" in listing and len(default_in) == 1 and "USB PnP" in default_in[0]


def test_cli_checks_its_arguments_before_the_audio_device(tmp_path, monkeypatch, capsys):
    def no_device():
        raise AssertionError("the audio device was opened before the arguments were checked")

    monkeypatch.setattr("edgekws.record.load_sounddevice", no_device)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "no").write_text("x")
    af, wd = tmp_path / "afile", tmp_path / "words"
    for argv, message in ((["--words", "yes,,no"], "--words"), (["--words", "yes,yes"], "--words"),
                          (["--words", "yes,_silence_"], "--words: ['_silence_'] cannot be word folder names"),
                          (["--words", "a/b"], "--words: ['a/b'] cannot be word folder names"),
                          (["--out", str(af)], f"--out {af}: is a file, not a folder"),
                          (["--out", str(af / "data")], f"--out {af / 'data'}: cannot record into it ({af} is a "
                                                         "file, not a folder)"),
                          (["--out", str(wd), "--words", "yes,no"], f"--out {wd}: cannot record into it "
                                                                    f"({wd / 'no'} is a file, not a folder)"),
                          (["--out", str(af / "n"), "--background"], f"--out {af / 'n'}: cannot record into it")):
        argv = ["record", "--out", str(tmp_path / "d"), *argv]
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "words"]
    assert [p.name for p in wd.iterdir()] == ["no"]


@pytest.mark.parametrize("error, hint", [(OSError("PortAudio library not found"), "libportaudio2"),
                                         (ImportError("No module named 'sounddevice'"), "pip install sounddevice")])
def test_missing_portaudio_is_explained(monkeypatch, capsys, error, hint):
    real = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "sounddevice":
            raise error
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(MissingDependencyError, match=hint):
        load_sounddevice()
    assert cli.main(["devices"]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install libportaudio2" in err and "Traceback" not in err
    assert devmod.PORTAUDIO_HINT in err


def test_listen_mic_hears_the_samples_listen_file_reads(tmp_path, monkeypatch):
    """The mic path scaled by 32767 where --file's decoding scales by 32768: every loud sample came
    out one step smaller, and scores (sometimes times) differed from --file on the same audio."""
    import struct

    import edgekws.stream.pipeline as pl
    from edgekws.audio import read_wav

    rng = np.random.default_rng(0)
    pcm = np.clip(rng.standard_normal(2 * 48000) * 12000, -32768, 32767).astype(np.int16)   # loud, 48 kHz
    wav = tmp_path / "a.wav"
    data = pcm.tobytes()
    wav.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
                    struct.pack("<IHHIIHH", 16, 1, 1, 48000, 96000, 2, 16) + b"data" + struct.pack("<I", len(data)) + data)
    got = []

    class Recorder:   # what the detector is given
        def __init__(self, setup, engine):
            pass

        def push(self, samples):
            got.append(np.array(samples))
            return []

        def flush(self):
            return []

    sd = laptop()                                              # default input: 48 kHz
    sd.signals = [np.concatenate([pcm / 32768.0, np.zeros(48000)]).astype(np.float32)]
    monkeypatch.setattr("edgekws.recording.load_sounddevice", lambda: sd)
    monkeypatch.setattr(pl, "StreamingDetector", Recorder)
    model = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "base-ja"
    assert cli.main(["listen", str(model), "--mic", "--seconds", "2"]) == 0
    heard = np.concatenate(got)
    assert heard.dtype == np.int16 and np.array_equal(heard, read_wav(wav, dtype="int16"))
    # the device opened at another of its rates (--rate), as record --rate does
    got.clear()
    sd.signals = [np.concatenate([pcm[::48][:1000] / 32768.0, np.zeros(44100)]).astype(np.float32)]
    assert cli.main(["listen", str(model), "--mic", "--rate", "44100", "--seconds", "0.5"]) == 0
    assert sd.streams[-1].samplerate == 44100 and len(np.concatenate(got)) == 8000
