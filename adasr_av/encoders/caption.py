"""The caption encoder: what a frame shows, in words, from any transformers image-to-text model.

Captioners (BLIP, GIT) and vision-language models (Florence-2, SmolVLM, Qwen2-VL...) load by folder
or hub id through `AutoProcessor` and `AutoModelForImageTextToText`; a VLM gets `prompt` as its
instruction (through the processor's chat template when it has one). Frames pass the change test
of `frames.py`; each changed frame is captioned, and a caption is emitted when it differs from the
last one emitted, as one chunk covering the frame's moment. Computation-aware times as in `ocr.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from adasr_av.encoders.frames import FrameChangeOptions, FrameStats, read_when_free
from adasr_av.encoders.ocr import sentence_key
from adasr_av.errors import AdasrError, first_line
from adasr_av.types import TextChunk, VideoFrame

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"


@dataclass(frozen=True)
class CaptionOptions:
    model: str = DEFAULT_CAPTION_MODEL  # a folder or hub id of an image-to-text model
    prompt: str = ""  # a VLM's instruction, e.g. "Describe the image in one sentence."; "" for captioners
    max_new_tokens: int = 30
    device: str = "cpu"
    computation_aware: bool = True
    change: FrameChangeOptions = field(default_factory=FrameChangeOptions)

    def __post_init__(self):
        if not self.model:
            raise AdasrError("video.caption_model must name a model folder or hub id")
        if self.max_new_tokens < 1:
            raise AdasrError(f"video.caption_tokens must be at least 1, got {self.max_new_tokens}")


def load_captioner(name: str, device: str = "cpu"):
    """(processor, model) of an image-to-text model; one AdasrError line for anything else."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    from adasr_av.reasoner.loading import resolve_source

    source = resolve_source(name, "caption model")
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as err:  # a hub id that cannot be reached, a folder without a config
        raise AdasrError(f"caption model {name}: cannot load ({first_line(err)})") from None
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise AdasrError(
            f"caption model {name}: not an image-to-text model (it is a {config.model_type} model)"
        )
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=torch.float32 if device == "cpu" else "auto"
        )
    except Exception as err:
        raise AdasrError(f"caption model {name}: cannot load ({first_line(err)})") from None
    return processor, model.to(device).eval()


class CaptionEncoder:
    """Video frames -> TextChunks of what they show (see the module doc)."""

    source = "caption"
    takes = "video"

    def __init__(self, options: CaptionOptions = CaptionOptions(), loaded=None):
        self.options = options
        self.processor, self.model = (
            loaded if loaded is not None else load_captioner(options.model, options.device)
        )

    def _inputs(self, image) -> dict:
        prompt = self.options.prompt
        if prompt and getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=image, text=prompt or None, return_tensors="pt")
        return {k: v.to(self.model.device) for k, v in inputs.items()}

    @torch.no_grad()
    def caption(self, image) -> str:
        """One frame's caption: the generated text after any prompt, on one line."""
        inputs = self._inputs(image)
        out = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)
        prompt = inputs.get("input_ids")
        if (
            prompt is not None
            and out.shape[1] > prompt.shape[1]
            and torch.equal(out[:, : prompt.shape[1]], prompt)
        ):
            out = out[:, prompt.shape[1] :]  # decoder-only models return the prompt first
        return " ".join(self.processor.batch_decode(out, skip_special_tokens=True)[0].split())

    def new_stats(self) -> FrameStats:
        return FrameStats()

    def __call__(self, frames: Iterable[VideoFrame], stats: FrameStats | None = None) -> Iterator[TextChunk]:
        o, last = self.options, ""
        stats = stats if stats is not None else FrameStats()
        for frame, text, t_emit in read_when_free(frames, self.caption, o.change, o.computation_aware, stats):
            if text and sentence_key(text) != sentence_key(last):
                last = text
                yield TextChunk(text, frame.t, frame.t, t_emit, source="caption")
