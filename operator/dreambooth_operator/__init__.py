"""DreamBooth operator: reconciles DreamBoothJob resources into LoRA adapters."""
