"""Conditions: lastTransitionTime moves only when the status flips."""

from dreambooth_operator.conditions import set_condition


def test_transition_time_moves_only_on_flip():
    first = set_condition(None, "Validated", False, "SecretNotFound", "a", "t1")
    same = set_condition(first, "Validated", False, "BucketNotFound", "b", "t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "BucketNotFound"
    flipped = set_condition(same, "Validated", True, "InputsReady", "c", "t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_order_is_stable_and_others_untouched():
    conditions = set_condition(None, "Trained", False, "Training", "", "t1")
    conditions = set_condition(conditions, "Validated", True, "InputsReady", "", "t1")
    assert [c["type"] for c in conditions] == ["Validated", "Trained"]
