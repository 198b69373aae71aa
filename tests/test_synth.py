"""`adasr-av synth`: streamed-story datasets in text and speech mode, resumable, on real components."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.cli import main
from adasr_av.data.speech_mode import SPEECH_VOICES, SPEECH_WPM_RANGE, assign_sentences
from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import chunk_gold, text_record
from adasr_av.data.synth import SynthOptions, run_synth
from adasr_av.types import TextChunk

normalise = EnglishTextNormalizer()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, lines(path))}


def synth(tmp_path: Path, name: str, n: int, splits=("train",), seed: int = 3):
    return run_synth(SynthOptions("text", seed=seed, n=n, splits=splits), tmp_path / name, progress=False)


def test_text_mode_is_deterministic_and_labelled(tmp_path):
    synth(tmp_path, "a", 3, ("train", "ood"))
    synth(tmp_path, "b", 3, ("train", "ood"))
    synth(tmp_path, "c", 3, ("train", "ood"), seed=4)
    for split in ("train", "ood"):
        a = lines(tmp_path / "a" / f"{split}.jsonl")
        assert a == lines(tmp_path / "b" / f"{split}.jsonl")
        assert a != lines(tmp_path / "c" / f"{split}.jsonl")
        got = records(tmp_path / "a" / f"{split}.jsonl")
        assert list(got) == [f"{split}-00000{i}" for i in range(3)]
        for i, record in enumerate(got.values()):
            story = generate_story(3, split, i)
            assert record == json.loads(json.dumps(text_record(story)))
            assert record["mode"] == "text" and record["words_per_minute"] == 150
            assert record["answer"] == str(story.answer)
            assert [c["text"] for c in record["chunks"]] == [s.text for s in story.sentences]
            assert all(c["t_start"] < c["t_end"] <= c["t_emit"] for c in record["chunks"])
            assert all({"informative", "thought", "sentences"} <= set(c) for c in record["chunks"])
    settings = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert settings == {"mode": "text", "seed": 3, "words_per_minute": 150.0}


def test_a_torn_run_resumes_without_redoing_finished_items(tmp_path):
    synth(tmp_path, "clean", 5)
    synth(tmp_path, "torn", 5)
    path = tmp_path / "torn" / "train.jsonl"
    kept = lines(path)
    path.write_text("\n".join(kept[:3]) + "\n" + kept[3][: len(kept[3]) // 2], encoding="utf-8")
    summary = synth(tmp_path, "torn", 5)
    assert (summary.existing, summary.written) == (3, 2)
    assert lines(path)[:3] == kept[:3]  # finished records kept as they were
    assert sorted(lines(path)) == sorted(lines(tmp_path / "clean" / "train.jsonl"))
    summary = synth(tmp_path, "torn", 7)  # a larger n extends the dataset
    assert (summary.existing, summary.written) == (5, 2) and len(records(path)) == 7


def test_a_killed_process_resumes(tmp_path):
    out, n = tmp_path / "killed", 3000
    command = [sys.executable, "-m", "adasr_av.cli", "synth", "--mode", "text", "--n", str(n), "--seed", "3"]
    process = subprocess.Popen([*command, "--splits", "train", "--out", str(out), "--no-progress"])
    path = out / "train.jsonl"
    while process.poll() is None and (not path.exists() or path.stat().st_size < 50_000):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    done = len(lines(path))
    assert 0 < done < n
    assert main(["synth", "--mode", "text", "--n", str(n), "--seed", "3", "--splits", "train",
                 "--out", str(out), "--no-progress"]) == 0  # fmt: skip
    synth(tmp_path, "clean", n)
    resumed = lines(path)
    assert len(resumed) == n and sorted(resumed) == sorted(lines(tmp_path / "clean" / "train.jsonl"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "text", "--n", "2", "--splits", "train,dev"], "unknown split 'dev'"),
        (["--mode", "text", "--n", "0"], "n must be at least 1"),
        (["--mode", "speech", "--n", "2", "--voices", "en-us,xx"], "unknown eSpeak NG voice 'xx'.*en-us-nyc"),
        (
            ["--mode", "speech", "--n", "2", "--voices", "en-us+zz"],
            "no variant 'zz'.*m7.*default voices: en-us",
        ),
        (["--mode", "speech", "--n", "2", "--wpm", "120"], "--wpm is only for --mode text"),
        (["--mode", "text", "--n", "2", "--workers", "0"], "workers must be at least 1"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["synth", *args, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adasr-av: error:")
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "out").exists()


def test_an_unwritable_folder_or_other_settings_are_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["synth", "--mode", "text", "--n", "2", "--out", str(tmp_path / "file" / "out")]) == 1
    assert "cannot write to" in capsys.readouterr().err
    base = ["synth", "--mode", "text", "--n", "2", "--splits", "test", "--out", str(tmp_path / "d")]
    assert main([*base, "--no-progress"]) == 0
    assert main([*base, "--seed", "1"]) == 1
    assert "made with seed=0, not seed=1" in capsys.readouterr().err
    assert main([*base, "--wpm", "170"]) == 1
    assert main([*base, "--mode", "speech"]) == 1
    assert "mode=text" in capsys.readouterr().err
    assert len(lines(tmp_path / "d" / "test.jsonl")) == 2


def test_each_sentence_goes_to_the_chunk_covering_most_of_it():
    chunks = [TextChunk("a", 0.0, 2.0, 2.0), TextChunk("b", 2.1, 5.0, 5.0), TextChunk("c", 5.2, 6.0, 6.0)]
    spans = [(0.0, 1.0), (1.2, 2.6), (2.7, 4.9), (6.5, 7.0)]  # the last one the ASR missed
    assert assign_sentences(spans, chunks) == [[0, 1], [2], [3]]
    assert assign_sentences([(9.0, 9.5)], chunks) == [[], [], [0]]


def short_seed(split: str, n: int) -> int:
    """The seed whose first n stories have the fewest words: speech mode costs ASR time per second."""
    return min(range(200), key=lambda s: sum(len(generate_story(s, split, i).text.split()) for i in range(n)))


def test_speech_mode_carries_real_asr_chunks_and_gold(tmp_path, capsys):
    seed = short_seed("test", 2)
    out = tmp_path / "speech"
    command = ["synth", "--mode", "speech", "--n", "2", "--seed", str(seed), "--splits", "test",
               "--workers", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(command) == 0
    print(capsys.readouterr().out, file=sys.stderr)  # "... s per story" in the test log
    got = records(out / "test.jsonl")
    assert sorted(got) == ["test-000000", "test-000001"]
    for i in range(2):
        record, story = got[f"test-00000{i}"], generate_story(seed, "test", i)
        assert record["mode"] == "speech" and record["voice"] in SPEECH_VOICES
        assert SPEECH_WPM_RANGE[0] <= record["words_per_minute"] <= SPEECH_WPM_RANGE[1]
        assert record["answer"] == str(story.answer) and record["question"] == story.question
        with av.open(str(out / record["audio"])) as container:
            stream = container.streams.audio[0]
            assert (stream.rate, stream.channels) == (16_000, 1)
            seconds = float(stream.duration * stream.time_base)
        assert seconds == pytest.approx(record["sentence_times"][-1][1], abs=0.05)
        chunks = record["chunks"]
        assert all(c["source"] == "asr" and c["text"] and c["words"] for c in chunks)
        assert all(c["t_start"] <= c["t_end"] <= c["t_emit"] <= seconds + 1e-3 for c in chunks)
        assert [c["t_start"] for c in chunks] == sorted(c["t_start"] for c in chunks)
        assert [c["t_emit"] for c in chunks] == sorted(c["t_emit"] for c in chunks)
        assert sorted(j for c in chunks for j in c["sentences"]) == list(range(len(story.sentences)))
        for c in chunks:
            assert {k: c[k] for k in ("sentences", "informative", "thought")} == chunk_gold(
                story, c["sentences"]
            )
        # Real ASR text, errors included: tiny.en mishears a short story more than a long one.
        heard = " ".join(c["text"] for c in chunks)
        assert len(set(normalise(heard).split()) & set(normalise(story.text).split())) >= 3, heard

    # Each story is made in a fresh process, so a remade one is the same: audio, transcript, times.
    path, audio = out / "test.jsonl", out / got["test-000000"]["audio"]
    wav = audio.read_bytes()
    path.write_text(next(line for line in lines(path) if "test-000001" in line[:40]) + "\n")
    assert main(command) == 0
    assert records(path) == got and audio.read_bytes() == wav
