"""Speech synthesis through the bundled libespeak-ng and the Piper voice, and writing it to media files:
real audio, no mocks."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import av
import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.data.tts import PIPER_VOICE, VOICES, synthesize, write_audio
from adasr_av.errors import AdasrError

RATE = 16_000
SENTENCE = (
    "The old lighthouse keeper counted seven ships sailing past the rocky island "
    "before the evening storm finally arrived over the bay."
)  # 20 words


def seconds(samples: np.ndarray) -> float:
    return len(samples) / RATE


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def median_f0(samples: np.ndarray, window: int = 800) -> float:
    """Median pitch in Hz of the loud windows, by autocorrelation over 60..400 Hz."""
    pitches = []
    for start in range(0, len(samples) - window, window // 2):
        frame = samples[start : start + window].astype(np.float64)
        if rms(frame) < 0.05:
            continue
        correlation = np.correlate(frame, frame, "full")[window - 1 :]
        lag = RATE // 400 + int(np.argmax(correlation[RATE // 400 : RATE // 60]))
        if correlation[lag] > 0.3 * correlation[0]:
            pitches.append(RATE / lag)
    return float(np.median(pitches))


def spectral_centroid(samples: np.ndarray) -> float:
    magnitude = np.abs(np.fft.rfft(samples))
    return float((magnitude * np.fft.rfftfreq(len(samples), 1 / RATE)).sum() / magnitude.sum())


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthesize(SENTENCE)


def test_output_is_16k_mono_float32_speech(speech):
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert speech.min() >= -1.0 and speech.max() <= 1.0
    assert rms(speech) > 0.03
    assert 4.0 < seconds(speech) < 12.0  # 20 words at a nominal 160 wpm
    assert 80 < median_f0(speech) < 130  # a male voice, so the audio really is at 16 kHz


def test_duration_grows_with_the_text(speech):
    assert seconds(synthesize("Seven ships.")) < 0.3 * seconds(speech)
    assert seconds(synthesize(f"{SENTENCE} {SENTENCE}")) > 1.8 * seconds(speech)


def test_duration_shrinks_with_a_faster_rate():
    slow = seconds(synthesize(SENTENCE, words_per_minute=130))
    fast = seconds(synthesize(SENTENCE, words_per_minute=190))
    assert fast < 0.8 * slow  # 130/190 = 0.68 in theory


def test_pitch_raises_the_voice():
    assert median_f0(synthesize(SENTENCE, pitch=80)) > 1.2 * median_f0(synthesize(SENTENCE, pitch=20))


@pytest.mark.parametrize("voice", VOICES)
def test_every_voice_speaks(voice):
    samples = synthesize(SENTENCE, voice=voice)
    assert rms(samples) > 0.03 and 4.0 < seconds(samples) < 12.0


def test_the_voices_sound_different():
    spoken = {voice: synthesize(SENTENCE, voice) for voice in VOICES}
    features = {voice: (median_f0(s), spectral_centroid(s)) for voice, s in spoken.items()}
    for (a, (f0_a, centroid_a)), (b, (f0_b, centroid_b)) in itertools.combinations(features.items(), 2):
        pitch_apart = abs(f0_a - f0_b) / min(f0_a, f0_b) > 0.1
        timbre_apart = abs(centroid_a - centroid_b) / min(centroid_a, centroid_b) > 0.08
        assert pitch_apart or timbre_apart, f"{a} and {b} sound alike: {features[a]} vs {features[b]}"


@pytest.mark.parametrize("voice", ["xx-nope", "en-us+nosuch", "f3", "en-gb", "piper:nope", "piper:"])
def test_an_unknown_voice_is_named(voice):
    with pytest.raises(AdasrError, match=repr(voice).replace("+", r"\+")):
        synthesize("Hello.", voice=voice)


@pytest.mark.parametrize("settings", [{"words_per_minute": 10}, {"pitch": 101}])
def test_out_of_range_settings_are_refused(settings):
    with pytest.raises(AdasrError, match=str(next(iter(settings.values())))):
        synthesize("Hello.", **settings)


def test_concurrent_calls_do_not_mix_voices_or_rates():
    jobs = [(voice, wpm) for voice in VOICES for wpm in (130, 190)]
    alone = {job: seconds(synthesize(SENTENCE, *job)) for job in jobs}
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda job: seconds(synthesize(SENTENCE, *job)), jobs * 2))
    for job, duration in zip(jobs * 2, together, strict=True):
        assert duration == pytest.approx(alone[job], abs=0.05), job


@pytest.mark.parametrize(
    ("suffix", "container", "codecs", "video"),
    [
        (".wav", "wav", {"pcm_s16le"}, False),
        (".mp3", "mp3", {"mp3", "mp3float"}, False),
        (".ogg", "ogg", {"opus", "libopus", "vorbis"}, False),
        (".mp4", "mp4", {"aac"}, False),
        (".mp4", "mp4", {"aac"}, True),
        (".m4a", "mp4", {"aac"}, False),
    ],
)
def test_write_audio_round_trip(tmp_path, speech, suffix, container, codecs, video):
    path = write_audio(tmp_path / f"speech{suffix}", speech, video=video)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    with av.open(str(path)) as media:
        assert container in media.format.name.split(",")
        stream = media.streams.audio[0]
        assert stream.codec_context.name in codecs
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in media.decode(stream)])
        assert len(decoded) / stream.rate == pytest.approx(seconds(speech), abs=0.15)
        assert rms(decoded) > 0.03
        assert bool(media.streams.video) == video


def test_write_audio_replaces_an_existing_file(tmp_path, speech):
    path = tmp_path / "speech.wav"
    path.write_bytes(b"stale")
    write_audio(path, speech[:RATE])
    with av.open(str(path)) as media:
        assert sum(f.samples for f in media.decode(audio=0)) == RATE


@pytest.mark.parametrize(("name", "video"), [("speech.flac", False), ("speech", False), ("speech.wav", True)])
def test_write_audio_refuses_what_it_cannot_write(tmp_path, speech, name, video):
    with pytest.raises(AdasrError, match=name):
        write_audio(tmp_path / name, speech, video=video)
    assert not list(tmp_path.iterdir())


STORY = (
    "Lucy has nine dollars. She earns seven dollars. Adam has forty two dollars. "
    "How many dollars do Lucy and Adam have together at the end?"
)


@pytest.fixture(scope="module")
def piper_speech() -> np.ndarray:
    return synthesize(SENTENCE, PIPER_VOICE)


@pytest.fixture(scope="module")
def tiny_en():
    """The bundled Whisper tiny.en, straight through faster-whisper."""
    from faster_whisper import WhisperModel

    from adasr_av.encoders.whisper_models import bundled_model_path

    return WhisperModel(str(bundled_model_path()), device="cpu", compute_type="int8", cpu_threads=1)


def test_the_piper_voice_is_16k_mono_float32_speech(piper_speech):
    assert piper_speech.dtype == np.float32 and piper_speech.ndim == 1
    assert piper_speech.min() >= -1.0 and piper_speech.max() <= 1.0
    assert rms(piper_speech) > 0.03
    assert 80 < median_f0(piper_speech) < 130  # Joe is a male voice: the audio really is at 16 kHz


@pytest.mark.parametrize("wpm", [110, 160, 220])
def test_the_piper_voice_speaks_at_about_the_rate_asked(wpm):
    spoken = (
        60 * len(f"{SENTENCE} {STORY}".split()) / seconds(synthesize(f"{SENTENCE} {STORY}", PIPER_VOICE, wpm))
    )
    assert spoken == pytest.approx(wpm, rel=0.1)  # 1 to 7% fast on this text


def test_the_piper_voice_is_deterministic(piper_speech):
    synthesize(STORY, PIPER_VOICE, 130)  # another text and rate in between change nothing
    assert np.array_equal(synthesize(SENTENCE, PIPER_VOICE), piper_speech)


def test_the_piper_voice_pauses_between_sentences():
    one, two = (
        seconds(synthesize(text, PIPER_VOICE)) for text in ("Seven ships.", "Seven ships. Seven ships.")
    )
    assert two > 2 * one + 0.15  # Piper itself puts no silence between its sentences


@pytest.mark.parametrize("text", [SENTENCE, STORY])
def test_whisper_tiny_en_hears_the_piper_voice(tiny_en, text):
    normalise = EnglishTextNormalizer()
    segments, _ = tiny_en.transcribe(
        synthesize(text, PIPER_VOICE), language="en", beam_size=1, temperature=0.0
    )
    heard = " ".join(s.text for s in segments)
    assert jiwer.wer(normalise(text), normalise(heard)) < 0.2, heard


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"words_per_minute": 400}, "400 is outside the Piper voice's range"),
        ({"pitch": 60}, "no pitch setting"),
    ],
)
def test_settings_the_piper_voice_lacks_are_refused(settings, message):
    with pytest.raises(AdasrError, match=message):
        synthesize("Hello.", PIPER_VOICE, **settings)


def test_piper_and_espeak_side_by_side_in_threads(piper_speech):
    """Piper phonemises with its own eSpeak NG; ours is another library in the same process."""
    espeak_alone = seconds(synthesize(SENTENCE))
    with ThreadPoolExecutor(max_workers=4) as pool:
        spoken = list(pool.map(lambda voice: synthesize(SENTENCE, voice), [PIPER_VOICE, "en-us"] * 2))
    for voice, samples in zip([PIPER_VOICE, "en-us"] * 2, spoken, strict=True):
        if voice == PIPER_VOICE:
            assert np.array_equal(samples, piper_speech)
        else:
            assert seconds(samples) == pytest.approx(espeak_alone, abs=0.05)
