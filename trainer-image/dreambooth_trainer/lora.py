"""LoRA adapters (peft) on the UNet's attention projections and optionally the text encoder.

Checkpoints keep peft's own state dict (exact round trip); the published adapter is
``pytorch_lora_weights.safetensors`` in the diffusers key format, with the LoRA config in the
file's metadata so ``load_lora_weights`` applies the right alpha.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from dreambooth_api.names import WEIGHT_NAME
from dreambooth_api.training import Lora
from peft import (
    LoraConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from safetensors import safe_open

# CLIP's attention projections: the text encoder's LoRA targets (not part of the API).
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _config(lora: Lora, targets) -> LoraConfig:
    # peft scales updates by lora_alpha / r, as the API documents alpha.
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        init_lora_weights="gaussian",
        target_modules=list(targets),
    )


def unet_config(lora: Lora) -> LoraConfig:
    return _config(lora, lora.target_modules)


def text_encoder_config(lora: Lora) -> LoraConfig:
    return _config(lora, TEXT_ENCODER_TARGETS)


def attach(unet, text_encoder, lora: Lora) -> list[torch.nn.Parameter]:
    """Add the adapters in place; return the trainable parameters (LoRA only), in fp32."""
    unet.add_adapter(unet_config(lora))
    modules = [unet]
    if lora.text_encoder:
        # transformers' own add_adapter wants a newer peft; peft's injector is what it calls.
        config = text_encoder_config(lora)
        inject_adapter_in_model(config, text_encoder)
        text_encoder.peft_config = {"default": config}
        modules.append(text_encoder)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"no LoRA target modules matched {lora.target_modules}")
    for p in params:
        p.data = p.data.float()
    return params


def state_dicts(unet, text_encoder, lora: Lora) -> dict[str, dict[str, torch.Tensor]]:
    """peft state dicts of the adapters, detached fp32 copies on CPU."""
    out = {"unet": get_peft_model_state_dict(unet)}
    if lora.text_encoder:
        out["text_encoder"] = get_peft_model_state_dict(text_encoder)
    return {k: {n: t.detach().float().cpu().contiguous() for n, t in sd.items()} for k, sd in out.items()}


def load_state_dicts(unet, text_encoder, sds: dict[str, dict[str, torch.Tensor]]) -> None:
    for name, module in (("unet", unet), ("text_encoder", text_encoder)):
        if name in sds:
            result = set_peft_model_state_dict(module, sds[name])
            unexpected = getattr(result, "unexpected_keys", None)
            if unexpected:
                raise ValueError(f"checkpoint has unknown {name} LoRA keys: {unexpected[:3]}")


def _metadata(config: LoraConfig) -> dict:
    """The config as file metadata, sets sorted: the same adapter always has the same bytes."""
    return {k: sorted(v) if isinstance(v, set | frozenset) else v for k, v in config.to_dict().items()}


def save_diffusers(directory: Path, sds: dict[str, dict[str, torch.Tensor]], lora: Lora) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` loadable by ``load_lora_weights``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    text_encoder = sds.get("text_encoder")
    StableDiffusionPipeline.save_lora_weights(
        save_directory=directory,
        unet_lora_layers=convert_state_dict_to_diffusers(sds["unet"]),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text_encoder) if text_encoder else None,
        unet_lora_adapter_metadata=_metadata(unet_config(lora)),
        text_encoder_lora_adapter_metadata=_metadata(text_encoder_config(lora)) if text_encoder else None,
        weight_name=WEIGHT_NAME,
    )
    path = Path(directory) / WEIGHT_NAME
    canonicalize_safetensors(path)
    return path


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def canonicalize_safetensors(path: Path) -> None:
    """Rewrite ``path`` with sorted header keys and tensors: the same adapter, the same bytes.

    safetensors writes its header from a hash map, whose order changes from process to
    process; a content-addressed artifact needs identical bytes on every publish.
    """
    with safe_open(path, "pt") as f:
        metadata = f.metadata() or {}
        tensors = {name: f.get_tensor(name).contiguous() for name in sorted(f.keys())}
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    offset, blobs = 0, []
    for name, tensor in tensors.items():
        blob = tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {
            "dtype": _DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))
