"""Gold protocol sequences as token ids with a loss mask, and the batches they train in.

Each span is encoded on its own (as the streaming session does), so training sees exactly the token
boundaries inference produces; environment spans get label -100 and never enter the loss.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch

from adasr_av.data.dataset import StreamedStory
from adasr_av.data.streamed import join_chunks, join_thoughts
from adasr_av.data.teacher import Style, gold_spans
from adasr_av.reasoner.protocol import Mode, encode_span, prompt_ids

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_story(
    tokenizer, story: StreamedStory, style: Style, mode: Mode = "streaming", chat_template: bool = False
) -> Example:
    """The gold sequence of `story`; its prompt comes from `prompt_ids`, as the session's does, so
    BOS and the chat template (`chat_template`, as the session's option) are the same in both."""
    spans = gold_spans(story, style, mode)[1:]  # the first is the question span: prompt_ids builds it
    ids = prompt_ids(tokenizer, story.question, chat_template=chat_template)
    labels = [IGNORE] * len(ids)
    for role, text in spans:
        span = encode_span(tokenizer, text)
        ids += span
        labels += span if role == "model" else [IGNORE] * len(span)
    return Example(ids, labels)


def merge_chunks(story: StreamedStory, rng: random.Random, p: float) -> StreamedStory:
    """Join neighbouring chunks with probability `p` each, as streaming ASR sometimes does: the
    merged chunk's gold is both thoughts in order."""
    if p <= 0 or story.thoughts is None or story.informative is None or len(story.chunks) < 2:
        return story
    chunks, informative, thoughts = [story.chunks[0]], [story.informative[0]], [story.thoughts[0]]
    for chunk, info, thought in zip(story.chunks[1:], story.informative[1:], story.thoughts[1:], strict=True):
        if rng.random() < p:
            chunks[-1] = join_chunks(chunks[-1], chunk)
            thoughts[-1] = join_thoughts(thoughts[-1], thought)
            informative[-1] = informative[-1] or info
        else:
            chunks.append(chunk)
            informative.append(info)
            thoughts.append(thought)
    return replace(story, chunks=tuple(chunks), informative=tuple(informative), thoughts=tuple(thoughts))


def batch_order(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of example indices for one epoch: shuffled, then sorted by length within windows of
    50 batches so padding stays small; the same (seed, epoch) always gives the same order."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e)] = torch.tensor(e.input_ids)
        labels[row, : len(e)] = torch.tensor(e.labels)
        mask[row, : len(e)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def iterate_batches(
    examples: list[Example], batch_size: int, seed: int, epochs: int, pad_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    lengths = [len(e) for e in examples]
    for epoch in range(epochs):
        for batch in batch_order(lengths, batch_size, seed, epoch):
            yield collate([examples[i] for i in batch], pad_id)
