"""Padded-head attention computes the stock attention: the same outputs and LoRA gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0
from dreambooth_api.training import Lora
from dreambooth_trainer import lora
from dreambooth_trainer.attention import MIN_KEYS, PaddedHeadAttnProcessor, attend, padded_width, vector_floats

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def test_pads_narrow_heads_over_long_sequences_on_the_cpu_only():
    width = vector_floats()
    assert width in (8, 16)
    assert padded_width(CPU, 4, 1024) == width
    assert padded_width(CPU, width - 1, MIN_KEYS) == width
    assert padded_width(CPU, 4, MIN_KEYS - 1) is None  # cross-attention over 77 prompt tokens
    assert padded_width(CPU, width, 1024) is None
    assert padded_width(GPU, 4, 1024) is None


@pytest.mark.parametrize("shape", [(2, 8, 1024, 4), (1, 2, 300, 5), (2, 8, 77, 4), (1, 4, 256, 16)])
def test_attend_equals_softmax_attention(shape):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=generator, dtype=torch.float64).float() for _ in range(3))
    exact = torch.softmax(q.double() @ k.double().transpose(-1, -2) / shape[-1] ** 0.5, -1) @ v.double()
    torch.testing.assert_close(attend(q, k, v).double(), exact, rtol=1e-5, atol=1e-6)


def _step(unet_dir, processor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward of the tiny UNet with LoRA: the prediction and the LoRA grads."""
    unet = UNet2DConditionModel.from_pretrained(unet_dir).requires_grad_(False)
    torch.manual_seed(0)
    lora.attach(unet, None, Lora(rank=4, alpha=4))
    unet.set_attn_processor(processor)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 32, 32, generator=generator)
    embeds = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    pred = unet(latents, torch.tensor([10, 900]), embeds, return_dict=False)[0]
    F.mse_loss(pred, torch.zeros_like(pred)).backward()
    return pred.detach(), {n: p.grad for n, p in unet.named_parameters() if p.requires_grad}


def test_unet_step_matches_the_stock_processor(tiny_model):
    """The tiny UNet's 4-float heads over 1,024 tokens take the padded path; nothing changes."""
    assert padded_width(CPU, 32 // 8, 32 * 32) is not None
    stock_pred, stock_grads = _step(tiny_model / "unet", AttnProcessor2_0())
    pred, grads = _step(tiny_model / "unet", PaddedHeadAttnProcessor())
    torch.testing.assert_close(pred, stock_pred, rtol=1e-5, atol=1e-6)
    assert grads.keys() == stock_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-4, atol=1e-7, msg=name)
