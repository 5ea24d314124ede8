"""The trainer's unit fixtures (tiny model, cloody photos, job configs), reused against MinIO."""

from tests.unit.trainer.conftest import class_images, cloody, job, job_with_priors, tiny_model  # noqa: F401
