"""The streaming ASR as a noisy channel: measured on spoken stories, applied to text-mode stories.

Speech-mode data (eSpeak or Piper, then the bundled tiny.en streaming ASR) costs tens of seconds a
story on one core, too slow for the tens of thousands of stories training needs. So the errors
the ASR makes are counted once on a few hundred spoken stories (`measure_channel`) and the same
kinds of error are then drawn at the measured rates on text stories (`apply_channel`):

- word substitutions, deletions and insertions of ordinary words, substitutes drawn from the
  confusions actually seen ("now" -> "how"); numbers and holder names are left alone, because a
  changed number or name cannot be recovered and training on the true value would teach the
  model to invent it;
- the end of a sentence written as a comma or nothing (Whisper's run-on text);
- neighbouring sentences merged into one chunk, and a sentence split across two chunks.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from difflib import SequenceMatcher
from pathlib import Path

from adasr_av.atomic import write_atomically
from adasr_av.data.dataset import StreamedStory, holder_names
from adasr_av.data.streamed import join_chunks, join_thoughts
from adasr_av.errors import AdasrError
from adasr_av.reasoner.normalize import normalize_text, normalized_words
from adasr_av.types import TextChunk


def is_key(word: str, names: set[str]) -> bool:
    """A number or a holder's name: the words whose errors the channel does not imitate."""
    return word.isdigit() or word in names


@dataclass
class ASRChannel:
    """Error rates per reference word (ordinary words only) and per sentence or chunk boundary."""

    stories: int = 0
    words: int = 0  # ordinary reference words aligned
    substitution: float = 0.0
    deletion: float = 0.0
    insertion: float = 0.0  # inserted words per reference word
    end_as_comma: float = 0.0  # a sentence end written as a comma ...
    end_dropped: float = 0.0  # ... or with no mark at all
    merge: float = 0.0  # a sentence shares its chunk with the one before it
    split: float = 0.0  # a sentence's words spread over two chunks
    confusions: dict[str, dict[str, int]] = field(default_factory=dict)  # reference -> heard -> count
    inserted: dict[str, int] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ASRChannel:
        try:
            return cls(**json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise AdasrError(f"ASR channel {path}: {err}") from None


def _names(record: dict) -> set[str]:
    """The words of the story's holder names, lower case, as `normalized_words` writes them."""
    return {word.lower() for holder in holder_names(record) for word in holder.split()}


def measure_channel(records: Iterable[dict]) -> ASRChannel:
    """Count the ASR's errors on speech-mode records (`synth --mode speech`)."""
    counts: Counter[str] = Counter()
    confusions: dict[str, Counter[str]] = defaultdict(Counter)
    inserted: Counter[str] = Counter()
    stories = 0
    for record in records:
        if record.get("mode") != "speech":
            raise AdasrError(f"story {record.get('id')}: the channel is measured on speech-mode stories")
        stories += 1
        names = _names(record)
        reference = [w for s in record["sentences"] for w in normalized_words(s["text"])]
        heard = [w for c in record["chunks"] for w in normalized_words(c["text"])]
        matcher = SequenceMatcher(a=reference, b=heard, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            ordinary = [w for w in reference[i1:i2] if not is_key(w, names)]
            if op == "equal":
                counts["words"] += len(ordinary)
            elif op == "replace" and i2 - i1 == j2 - j1:
                for ref, hyp in zip(reference[i1:i2], heard[j1:j2], strict=True):
                    if not is_key(ref, names):
                        counts["words"] += 1
                        counts["substitution"] += 1
                        if not hyp.isdigit():  # a number heard for a word: invented, not imitated
                            confusions[ref][hyp] += 1
            else:  # unequal blocks: a deletion per missing word, an insertion per extra one
                counts["words"] += len(ordinary)
                counts["deletion"] += min(len(ordinary), max(0, (i2 - i1) - (j2 - j1)))
                counts["substitution"] += min(len(ordinary), j2 - j1, i2 - i1)
                extra = heard[j1 + (i2 - i1) : j2] if j2 - j1 > i2 - i1 else []
                counts["insertion"] += len(extra)
                inserted.update(w for w in extra if not w.isdigit())
        _count_boundaries(record, counts)
    if not counts["words"]:
        raise AdasrError("no speech-mode story with words to measure the channel on")
    sentences = max(1, counts["sentences"])
    return ASRChannel(
        stories=stories,
        words=counts["words"],
        substitution=counts["substitution"] / counts["words"],
        deletion=counts["deletion"] / counts["words"],
        insertion=counts["insertion"] / counts["words"],
        end_as_comma=counts["end_as_comma"] / max(1, counts["ends"]),
        end_dropped=counts["end_dropped"] / max(1, counts["ends"]),
        merge=counts["merged"] / sentences,
        split=counts["fragments"] / sentences,
        confusions={ref: dict(heard.most_common(8)) for ref, heard in confusions.items()},
        inserted=dict(inserted.most_common(50)),
    )


def _count_boundaries(record: dict, counts: Counter[str]) -> None:
    """Merges (a chunk holding several sentences), fragments (a chunk holding none) and how the
    ASR wrote the end of each chunk that closes a sentence."""
    counts["sentences"] += len(record["sentences"])
    for chunk in record["chunks"]:
        covered = chunk.get("sentences", [])
        text = chunk["text"].strip()
        counts["merged"] += max(0, len(covered) - 1)
        counts["fragments"] += not covered and bool(text)
        if covered and text:
            counts["ends"] += 1
            counts["end_as_comma"] += text.endswith(",")
            counts["end_dropped"] += text[-1].isalnum()


def apply_channel(story: StreamedStory, channel: ASRChannel, rng: random.Random) -> StreamedStory:
    """The text-mode story as the streaming ASR would have delivered it (see the module docstring).

    The gold follows the sentences: a merged chunk carries both thoughts, and of a split sentence
    the second piece, which completes it, carries its thought (the first piece is not informative).
    """
    if story.thoughts is None or story.informative is None:
        raise AdasrError(f"story {story.id}: the channel needs gold thoughts")
    names = _names(story.record)
    pieces: list[tuple[TextChunk, bool, str]] = []
    for chunk, informative, thought in zip(story.chunks, story.informative, story.thoughts, strict=True):
        text = _noisy_words(chunk.text, channel, names, rng)
        if pieces and rng.random() < channel.merge:
            last, last_info, last_thought = pieces[-1]
            merged = join_chunks(last, replace(chunk, text=text))
            pieces[-1] = (merged, last_info or informative, join_thoughts(last_thought, thought))
            continue
        words = text.split()
        if len(words) >= 4 and rng.random() < channel.split:
            cut = rng.randint(1, len(words) - 2)
            t_cut = chunk.t_start + (chunk.t_end - chunk.t_start) * cut / len(words)
            head = TextChunk(" ".join(words[:cut]), chunk.t_start, t_cut, t_cut, chunk.source)
            pieces.append((head, False, ""))
            chunk = TextChunk(" ".join(words[cut:]), t_cut, chunk.t_end, chunk.t_emit, chunk.source)
        else:
            chunk = replace(chunk, text=text)
        pieces.append((chunk, informative, thought))
    chunks, informative, thoughts = zip(*pieces, strict=True)
    return replace(story, chunks=tuple(chunks), informative=tuple(informative), thoughts=tuple(thoughts))


def _noisy_words(text: str, channel: ASRChannel, names: set[str], rng: random.Random) -> str:
    """One sentence through the word channel: ordinary words substituted, dropped or joined by an
    inserted word; the sentence end written as the ASR writes it."""
    text = normalize_text(text)  # number words are digits, so they are left alone like digits
    out: list[str] = []
    inserted = list(channel.inserted)
    weights = list(channel.inserted.values())
    for word in text.split():
        bare = word.strip(".,?!;:").lower()
        if inserted and rng.random() < channel.insertion:
            out.append(rng.choices(inserted, weights)[0])
        if is_key(bare, names) or not bare.isalpha():  # numbers, names, and what is not a word
            out.append(word)
            continue
        draw = rng.random()
        if draw < channel.deletion:
            _, trail = _split_trail(word)
            if trail and out:
                out[-1] += trail
            continue
        heard = channel.confusions.get(bare)
        if heard and draw < channel.deletion + channel.substitution:
            substitute = rng.choices(list(heard), list(heard.values()))[0]
            out.append(_like(word, substitute))
        else:
            out.append(word)
    sentence = " ".join(out)
    if sentence and sentence[-1] in ".?!":
        draw = rng.random()
        if draw < channel.end_as_comma:
            sentence = sentence[:-1] + ","
        elif draw < channel.end_as_comma + channel.end_dropped:
            sentence = sentence[:-1]
    return sentence


def _split_trail(word: str) -> tuple[str, str]:
    """A written word and the punctuation after it: "apples." -> ("apples", ".")."""
    core = word.rstrip(".,?!;:")
    return core, word[len(core) :]


def _like(original: str, substitute: str) -> str:
    """`substitute` written with the original word's capital and trailing punctuation."""
    core, trail = _split_trail(original)
    if core[:1].isupper():
        substitute = substitute[:1].upper() + substitute[1:]
    return substitute + trail


def measure_files(paths: Sequence[str | Path]) -> ASRChannel:
    from adasr_av.media.text import read_jsonl

    return measure_channel(record for path in paths for _, record in read_jsonl(path, "dataset"))
