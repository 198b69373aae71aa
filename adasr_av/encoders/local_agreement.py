"""LocalAgreement-2: commit the longest prefix on which two consecutive hypotheses agree.

The policy of whisper_streaming (Macháček et al., 2023). Text is compared without case,
punctuation or spacing, so "Five," and "five" agree. Two buffers hold its state:

- `HypothesisBuffer` for hypotheses of a whole rolling buffer (timed words in stream time; the
  committed words they repeat are found by time and text): the rolling policy;
- `PrefixAgreement` for hypotheses that continue a forced prefix of the committed words (so the
  new words line up by position, and need times only once they are committed): the VAD policy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from adasr_av.types import Word

_NOT_WORD = re.compile(r"[^\w]+")
SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


def ends_sentence(text: str) -> bool:
    return bool(SENTENCE_END.search(text.strip()))


def last_chars(text: str, n: int) -> str:
    return text[max(len(text) - n, 0) :]  # not text[-n:], which is all of it when n is 0


def word_key(word: Word | str) -> str:
    """A word as the agreement compares it: lower case, without punctuation or spaces."""
    return _NOT_WORD.sub("", (word if isinstance(word, str) else word.text).lower())


def agreed_length(a: Sequence[Word | str], b: Sequence[Word | str]) -> int:
    """How many leading words `a` and `b` share."""
    n = 0
    while n < min(len(a), len(b)) and word_key(a[n]) == word_key(b[n]):
        n += 1
    return n


class HypothesisBuffer:
    """Holds the previous hypothesis and what has been committed; nothing else."""

    def __init__(self, overlap_words: int = 5):
        self.overlap_words = overlap_words
        self.committed: list[Word] = []  # committed words still inside the audio buffer
        self.previous: list[Word] = []  # the last hypothesis beyond the committed words
        self.last_committed_end = 0.0

    def insert(self, hypothesis: list[Word]) -> list[Word]:
        """Take a new hypothesis (stream time); return the words it newly commits."""
        new = [w for w in hypothesis if w.t_start > self.last_committed_end - 0.1]
        new = self._drop_repeated_tail(new)
        agreed = agreed_length(new, self.previous)
        commit, self.previous = new[:agreed], new[agreed:]
        if commit:
            self.committed += commit
            self.last_committed_end = commit[-1].t_end
        return commit

    def _drop_repeated_tail(self, new: list[Word]) -> list[Word]:
        """Whisper re-transcribes the end of the committed text; drop the n words it repeats."""
        if not new or not self.committed or abs(new[0].t_start - self.last_committed_end) >= 1.0:
            return new
        for n in range(min(len(self.committed), len(new), self.overlap_words), 0, -1):
            if [word_key(w) for w in self.committed[-n:]] == [word_key(w) for w in new[:n]]:
                return new[n:]
        return new

    def pending(self) -> list[Word]:
        """Words heard but not yet agreed on (flushed when the stream ends)."""
        return list(self.previous)

    def flush(self) -> list[Word]:
        """The stream ended: commit the pending words as they stand; return them."""
        tail, self.previous = self.previous, []
        if tail:
            self.committed += tail
            self.last_committed_end = tail[-1].t_end
        return tail

    def forget_before(self, t: float) -> list[Word]:
        """The audio before `t` left the buffer: drop the committed words there; return them."""
        gone = [w for w in self.committed if w.t_end <= t]
        self.committed = [w for w in self.committed if w.t_end > t]
        return gone

    def drop_pending(self) -> list[Word]:
        """The audio of the pending words is lost (a failed decode): forget them; return them."""
        pending, self.previous = self.previous, []
        return pending


class PrefixAgreement:
    """LocalAgreement over continuations of the committed words of one utterance.

    Each hypothesis is what the model wrote after the committed text, given as a forced prefix;
    `agree` says how many of its leading words the previous hypothesis also had, `commit` takes them
    with their times, `flush` commits a final hypothesis whole; `close` ends the utterance."""

    def __init__(self):
        self.committed: list[Word] = []  # this utterance's committed words, timed
        self.previous: list[str] = []  # the last hypothesis beyond them

    @property
    def prefix(self) -> str:
        return "".join(w.text for w in self.committed)

    def agree(self, hypothesis: Sequence[str]) -> int:
        """Take a hypothesis; return how many leading words it shares with the previous one."""
        n = agreed_length(hypothesis, self.previous)
        self.previous = list(hypothesis)
        return n

    def commit(self, words: Sequence[Word]) -> list[Word]:
        """Commit the first words of the last hypothesis, timed; the rest stay pending."""
        self.committed += words
        self.previous = self.previous[len(words) :]
        return list(words)

    def flush(self, words: Sequence[Word]) -> list[Word]:
        """The utterance ended: commit its final hypothesis, timed, whatever agreed before."""
        self.previous = []
        return self.commit(words)

    def forget_before(self, t: float) -> list[Word]:
        """The audio before `t` left the buffer: its committed words leave the prefix; returns them."""
        gone = [w for w in self.committed if w.t_end <= t]
        self.committed = self.committed[len(gone) :]
        return gone

    def close(self) -> list[Word]:
        """Forget the utterance; returns its committed words (their text is the next prompt)."""
        words, self.committed, self.previous = self.committed, [], []
        return words
