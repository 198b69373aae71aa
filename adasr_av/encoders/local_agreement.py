"""LocalAgreement-2: commit the longest prefix on which two consecutive hypotheses agree.

The policy of whisper_streaming (Macháček et al., 2023). Words are in stream time; text is compared
without case, punctuation or spacing, so "Five," and "five" agree.
"""

from __future__ import annotations

import re

from adasr_av.types import Word

_NOT_WORD = re.compile(r"[^\w]+")


def _key(word: Word) -> str:
    return _NOT_WORD.sub("", word.text.lower())


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
        agreed = 0
        while agreed < min(len(new), len(self.previous)) and _key(new[agreed]) == _key(self.previous[agreed]):
            agreed += 1
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
            if [_key(w) for w in self.committed[-n:]] == [_key(w) for w in new[:n]]:
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
