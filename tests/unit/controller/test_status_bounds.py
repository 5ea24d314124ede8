"""Whatever a tenant-written progress.json holds, once it parses, the status the operator
writes from it is one the CRD admits (property-based: the status patch never gets a 422)."""

from __future__ import annotations

from dreambooth_api import DreamBoothJobStatus
from dreambooth_api.files import MAX_COUNT, Progress
from dreambooth_operator.reconcile import plan
from hypothesis import example, given, settings
from hypothesis import strategies as st

from .test_reconcile import STARTED
from .wrappers import MakeJob, Observe

finite = st.floats(allow_nan=False, allow_infinity=False)
rates = st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False)
# (st.builds would also fill the camelCase aliases pydantic puts in the signature.)
progress = st.fixed_dictionaries(dict(
    step=st.integers(0, MAX_COUNT), max_steps=st.integers(1, MAX_COUNT), world_size=st.integers(1, MAX_COUNT),
    time=finite, loss=st.none() | finite, images_per_second=rates, steps_per_second=rates,
    last_checkpoint=st.none() | st.text(max_size=256),
)).map(lambda fields: Progress(**fields))


@settings(max_examples=300, deadline=None)
@given(progress)
@example(Progress(step=0, max_steps=1, world_size=1, time=0.0, steps_per_second=1e-300))  # an eta of 1e303 s
def test_any_parsed_progress_makes_an_admissible_status(found):
    status = plan(MakeJob().no_prior().ctx(), STARTED, 1, Observe().train_job(0).progress(**found.model_dump()).obj())
    DreamBoothJobStatus.model_validate(status.status)
    assert all(-(1 << 63) <= n < 1 << 63 for n in integers(status.status)), "the apiserver stores int64"


def integers(value) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in integers(v)]
    if isinstance(value, list):
        return [n for v in value for n in integers(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []
