"""Prompt encoding with the CLIP text encoder, cached once when the encoder is frozen."""

from __future__ import annotations

import torch


def tokenize(tokenizer, prompt: str) -> torch.Tensor:
    """Token ids (1, model_max_length), padded like diffusers' training scripts."""
    return tokenizer(
        prompt,
        truncation=True,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


def encode(text_encoder, input_ids: torch.Tensor) -> torch.Tensor:
    return text_encoder(input_ids.to(text_encoder.device), return_dict=False)[0]


class PromptEmbeddings:
    """Hidden states for a batch of B instance prompts followed by B class prompts.

    With a frozen text encoder both prompts are encoded once (``cache``); with text-encoder
    LoRA they go through the (wrapped, trainable) encoder on every call.
    """

    def __init__(self, tokenizer, text_encoder, prompts: list[str], cache: bool):
        self.ids = [tokenize(tokenizer, p) for p in prompts]
        self.cached = None
        if cache:
            with torch.no_grad():
                self.cached = [encode(text_encoder, ids) for ids in self.ids]

    def batch(self, sizes: list[int]) -> dict[str, torch.Tensor]:
        """Model inputs for ``sizes[k]`` copies of prompt k: cached embeddings or token ids."""
        if self.cached is not None:
            embeds = [e.expand(n, -1, -1) for e, n in zip(self.cached, sizes, strict=True)]
            return {"embeds": torch.cat(embeds)}
        return {"input_ids": torch.cat([i.expand(n, -1) for i, n in zip(self.ids, sizes, strict=True)])}
