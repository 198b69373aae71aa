"""The scratch tokenizer's everyday-English corpus: common words become whole tokens, digits stay
split, and the protocol tokens are there."""

from __future__ import annotations

import wordfreq

from adasr_av.data.stories import generate_story
from adasr_av.data.streamed import text_record
from adasr_av.reasoner.protocol import PROTOCOL_TOKENS
from adasr_av.reasoner.scratch import everyday_english, train_tokenizer


def _story_texts(n: int) -> list[str]:
    return [
        " ".join(s["text"] for s in text_record(generate_story(0, "train", i))["sentences"]) for i in range(n)
    ]


def _whole_word_share(tokenizer, words: list[str]) -> float:
    return sum(len(tokenizer.tokenize(" " + w)) == 1 for w in words) / len(words)


def test_everyday_english_makes_common_words_whole_tokens():
    stories = _story_texts(200)
    # words a person says, taken from ranks 200-700 of the list (the corpus uses the first 5,000)
    common = [w for w in wordfreq.top_n_list("en", 700, wordlist="best")[200:] if w.isalpha()]
    stories_only = train_tokenizer(stories, 2000)
    broad = train_tokenizer(stories + list(everyday_english(5000, 300_000)), 2000)
    assert _whole_word_share(broad, common) >= 0.6
    assert _whole_word_share(stories_only, common) <= 0.2
    assert broad.tokenize(" 1866 dollars")[:5] == ["Ġ", "1", "8", "6", "6"]
    assert set(PROTOCOL_TOKENS) <= set(broad.get_vocab())


def test_everyday_english_uses_words_by_frequency_and_capitalises_some():
    lines = list(everyday_english(3000, 100_000))
    words = [w for line in lines for w in line.split()]
    assert 95_000 <= len(words) <= 110_000
    assert words.count("the") > 50 * max(1, words.count("garden"))
    assert "The" in words and {w.lower() for w in words} <= set(
        wordfreq.top_n_list("en", 3000, wordlist="best")
    )
