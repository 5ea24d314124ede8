import pytest
from dreambooth_trainer.schedule import lr_lambda


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("constant", [1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0]),
        ("linear", [1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25]),
        ("cosine", [1 / 3, 2 / 3, 1.0, 0.8535534, 0.5, 0.1464466]),
    ],
)
def test_schedules_warm_up_then_decay(kind, expected):
    factor = lr_lambda(kind, warmup_steps=2, max_steps=6)
    assert [factor(s) for s in range(6)] == pytest.approx(expected)
