"""LR schedules are diffusers' own; what the trainer cannot run is refused as a config error."""

import pytest
import torch
from diffusers.optimization import get_scheduler
from dreambooth_trainer.distributed import check_zero_stage
from dreambooth_trainer.errors import ConfigError
from dreambooth_trainer.schedule import check_scheduler, make_scheduler

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")


def _optimizer():
    return torch.optim.AdamW([torch.zeros(2, requires_grad=True)], lr=1.0)


def test_a_restored_scheduler_continues_the_same_curve():
    whole = make_scheduler(_optimizer(), "cosine", 2, 10)
    first = make_scheduler(_optimizer(), "cosine", 2, 10)
    for _ in range(4):
        whole.step()
        first.step()
    resumed = make_scheduler(_optimizer(), "cosine", 2, 10)
    resumed.load_state_dict(first.state_dict())
    for _ in range(3):
        whole.step()
        resumed.step()
    assert resumed.get_last_lr() == whole.get_last_lr()
    reference = get_scheduler("cosine", _optimizer(), num_warmup_steps=2, num_training_steps=10)
    for _ in range(7):
        reference.step()
    assert whole.get_last_lr() == reference.get_last_lr()


@pytest.mark.parametrize("name, message", [("foo", "not a diffusers schedule"),
                                           ("piecewise_constant", "needs arguments")])
def test_schedules_the_trainer_cannot_run_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=message):
        check_scheduler(name, 0, 10)


def test_zero_stages_deepspeed_does_not_run_are_config_errors():
    for stage in (0, 1, 2, 3):
        check_zero_stage(stage)
    with pytest.raises(ConfigError, match="zeroStage 4"):
        check_zero_stage(4)
