"""DreamBooth LoRA trainer: prior generation, training and publishing for dreambooth-operator."""

__version__ = "0.1.0"
