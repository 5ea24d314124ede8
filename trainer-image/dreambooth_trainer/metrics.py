"""Prometheus metrics of one trainer process, served over HTTP when a port is configured.

Names carry the ``dreambooth_`` prefix and base units (seconds, bytes); each process has its
own registry so several runs in one interpreter (the tests) never collide.
"""

from __future__ import annotations

import os

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server

from . import __version__

# attribute: (type, name, help) of every metric a trainer process exports.
METRICS = {
    "step": (Gauge, "dreambooth_train_step", "Optimizer steps done so far."),
    "max_steps": (Gauge, "dreambooth_train_max_steps", "Steps to train."),
    "steps": (Counter, "dreambooth_train_steps", "Optimizer steps taken by this process."),
    "samples": (Counter, "dreambooth_train_samples", "Images (instance and class) trained on by this process."),
    "samples_per_second": (Gauge, "dreambooth_train_samples_per_second",
                           "Training throughput of this process over the last step."),
    "learning_rate": (Gauge, "dreambooth_train_learning_rate", "Current learning rate."),
    "checkpoints": (Counter, "dreambooth_train_checkpoints_saved", "Checkpoints written."),
    "prior_images": (Counter, "dreambooth_prior_images_generated",
                     "Class images generated and stored by this process."),
    "prior_images_per_second": (Gauge, "dreambooth_prior_images_per_second",
                                "Class-image generation throughput of the last batch."),
    "gpu_memory": (Gauge, "dreambooth_gpu_memory_allocated_bytes",
                   "GPU memory allocated by PyTorch on this process's device."),
    "gpu_memory_peak": (Gauge, "dreambooth_gpu_memory_max_allocated_bytes",
                        "Peak GPU memory allocated by PyTorch on this process's device."),
}


class Metrics:
    def __init__(self, phase: str, rank: int = 0):
        self.registry = r = CollectorRegistry()
        Info("dreambooth_trainer_build", "Trainer version and process.", registry=r).info(
            {"version": __version__, "phase": phase, "rank": str(rank)}
        )
        self.loss = Gauge(
            "dreambooth_train_loss",
            "Loss of the last optimizer step: instance and prior MSE, total = instance + "
            "lossWeight * prior.",
            ["component"],
            registry=r,
        )
        for attribute, (kind, name, text) in METRICS.items():
            setattr(self, attribute, kind(name, text, registry=r))
        self.server = None

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (0: not at all), on the pod's IP when the pod says it."""
        if port:
            address = os.environ.get("POD_IP") or "0.0.0.0"
            self.server, _ = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def observe_gpu(self, device: torch.device) -> None:
        if device.type == "cuda":
            self.gpu_memory.set(torch.cuda.memory_allocated(device))
            self.gpu_memory_peak.set(torch.cuda.max_memory_allocated(device))
