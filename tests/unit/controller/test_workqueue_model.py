"""FairQueue against a model (a Hypothesis state machine): no key with two workers, FIFO within
a namespace, counts as the model says, and every key owed handed out once in the end."""

from __future__ import annotations

from dreambooth_operator.workqueue import FairQueue, Key
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from .test_workqueue import FakeClock, drain

NAMESPACES = ("a", "b", "c")
KEYS = st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(("x", "y", "z")))


class FairQueueMachine(RuleBasedStateMachine):
    """The queue against a model of plain lists, dicts and sets."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.queue = FairQueue(clock=self.clock)
        self.ready: list[Key] = []  # in the order keys became ready
        self.due: dict[Key, float] = {}
        self.processing: set[Key] = set()
        self.dirty: set[Key] = set()

    def queue_now(self, key: Key) -> None:
        if key in self.processing:
            self.dirty.add(key)
        elif key not in self.ready:
            self.ready.append(key)

    def promote(self) -> None:
        for _, key in sorted((due, key) for key, due in self.due.items() if due <= self.clock.now):
            del self.due[key]
            self.queue_now(key)

    @rule(key=KEYS)
    def add(self, key: Key) -> None:
        self.queue.add(key)
        self.due.pop(key, None)
        self.queue_now(key)

    @rule(key=KEYS, delay=st.sampled_from((0, 1, 2.5, 5)))
    def add_after(self, key: Key, delay: float) -> None:
        self.queue.add_after(key, delay)
        if delay <= 0:
            self.add(key)  # the model's add; the queue's add_after already ran
            return
        if key in self.ready or key in self.dirty:
            return
        self.due[key] = min(self.due.get(key, float("inf")), self.clock.now + delay)

    @rule(seconds=st.sampled_from((0.5, 1, 3)))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def get(self) -> None:
        key = self.queue.get(timeout=0)
        self.promote()
        if not self.ready:
            assert key is None
            return
        assert key is not None and key not in self.processing
        assert key == next(k for k in self.ready if k[0] == key[0]), "FIFO within a namespace"
        self.ready.remove(key)
        self.processing.add(key)

    @precondition(lambda self: self.processing)
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.processing)))
        self.queue.done(key)
        self.processing.remove(key)
        if key in self.dirty:
            self.dirty.remove(key)
            self.ready.append(key)

    @rule(key=KEYS)
    def discard(self, key: Key) -> None:
        self.queue.discard(key)
        if key in self.ready:
            self.ready.remove(key)
        self.due.pop(key, None)
        self.dirty.discard(key)

    @invariant()
    def counts_match_the_model(self) -> None:
        self.promote()
        assert (len(self.queue), self.queue.waiting(), self.queue.processing()) == (
            len(self.ready), len(self.due), len(self.processing))

    def teardown(self) -> None:
        for key in sorted(self.processing):
            self.queue.done(key)
        owed = set(self.ready) | set(self.due) | self.dirty
        self.clock.now += 3600
        handed_out = drain(self.queue)
        assert len(handed_out) == len(set(handed_out))
        assert set(handed_out) == owed


FairQueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_fair_queue_against_a_model = FairQueueMachine.TestCase
