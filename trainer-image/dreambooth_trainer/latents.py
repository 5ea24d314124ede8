"""VAE latents of the training images: encoded once and cached, or on every step.

The cache holds each image's latent distribution (mean and std), and every step draws a fresh
sample from it, as diffusers' ``--cache_latents`` does; both paths draw from the same generator
so caching changes speed, not results.
"""

from __future__ import annotations

import torch


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor.to(device)`` without waiting for the GPU: a copy from pageable memory synchronises
    the stream (the host would idle until every queued kernel ran), one from pinned memory does not."""
    if device.type != "cuda" or tensor.device == device:
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class Latents:
    def __init__(self, vae, pixels: torch.Tensor, cache: bool, dtype: torch.dtype, chunk: int = 8):
        self.vae, self.dtype, self.pixels = vae, dtype, pixels
        self.scaling = vae.config.scaling_factor
        self.shift = getattr(vae.config, "shift_factor", None) or 0.0
        self.mean = self.std = None
        if cache:
            means, stds = [], []
            for start in range(0, len(pixels), chunk):
                mean, std = self._moments(pixels[start : start + chunk])
                means.append(mean)
                stds.append(std)
            self.mean, self.std = torch.cat(means), torch.cat(stds)
            self.pixels = None

    def __len__(self) -> int:
        return len(self.mean if self.mean is not None else self.pixels)

    @torch.no_grad()
    def _moments(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(pixels.to(self.vae.device, self.dtype)).latent_dist
        return dist.mean, dist.std

    def sample(self, indices: list[int], generator: torch.Generator) -> torch.Tensor:
        """Scaled latents of images ``indices``, one draw from each image's distribution."""
        if self.mean is not None:
            rows = host_to_device(torch.tensor(indices), self.mean.device)
            mean, std = self.mean.index_select(0, rows), self.std.index_select(0, rows)
        else:
            mean, std = self._moments(self.pixels[indices])
        noise = torch.randn(mean.shape, generator=generator, dtype=torch.float32)
        latents = mean.float() + std.float() * host_to_device(noise, mean.device)
        return (latents - self.shift) * self.scaling
