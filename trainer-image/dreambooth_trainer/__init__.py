"""DreamBooth LoRA trainer: prior generation, training and publishing for dreambooth-operator."""

import os

__version__ = "0.1.0"

# An idle OpenMP worker spins before it sleeps: libgomp's default, 300,000 turns, outlasts the
# Python between two of a step's thousands of parallel regions, so CPU training burned 7-10 %
# more CPU time (a pod's CPU quota) for no speed. Read when torch loads libgomp, so set here,
# before anything imports torch; an explicit setting wins (see cpus.py for the thread count).
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
