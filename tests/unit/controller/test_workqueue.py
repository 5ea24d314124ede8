"""FairQueue: client-go's workqueue semantics plus round-robin over namespaces."""

from __future__ import annotations

import threading
import time

from dreambooth_operator.workqueue import FairQueue, Key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(queue: FairQueue) -> list[Key]:
    handed_out = []
    while (key := queue.get(timeout=0)) is not None:
        handed_out.append(key)
        queue.done(key)
    return handed_out


class WorkerClock:
    """The real clock, which tells when a worker thread read it: get() does so under the queue's
    lock just before it waits, so once the main thread can take the lock the worker is waiting."""

    def __init__(self) -> None:
        self.read_by_worker = threading.Event()

    def __call__(self) -> float:
        if threading.current_thread() is not threading.main_thread():
            self.read_by_worker.set()
        return time.monotonic()


def blocked_get(timeout: float | None) -> tuple[FairQueue, threading.Thread, list[Key | None]]:
    """A queue with a worker blocked in get(); a far delayed key makes it read the clock."""
    clock = WorkerClock()
    queue = FairQueue(clock=clock)
    queue.add_after(("far", "away"), 3600)
    result: list[Key | None] = []
    worker = threading.Thread(target=lambda: result.append(queue.get(timeout=timeout)), daemon=True)
    worker.start()
    assert clock.read_by_worker.wait(timeout=10)
    return queue, worker, result


def test_a_key_added_three_times_is_handed_out_once():
    queue = FairQueue()
    for _ in range(3):
        queue.add(("team-a", "cloody"))
    assert len(queue) == 1
    assert queue.get(timeout=0) == ("team-a", "cloody")
    assert len(queue) == 0
    assert queue.get(timeout=0) is None


def test_a_key_added_while_processing_goes_to_no_second_worker_and_comes_back_after_done():
    queue = FairQueue()
    key = ("team-a", "cloody")
    queue.add(key)
    assert queue.get(timeout=0) == key
    queue.add(key)
    queue.add(key)
    assert (len(queue), queue.processing()) == (0, 1)
    assert queue.get(timeout=0.05) is None
    queue.done(key)
    assert queue.get(timeout=0) == key
    queue.done(key)
    assert queue.get(timeout=0) is None


def test_done_without_a_new_add_does_not_requeue():
    queue = FairQueue()
    queue.add(("team-a", "cloody"))
    queue.done(queue.get(timeout=0))
    assert (len(queue), queue.processing()) == (0, 0)


def test_a_single_job_of_another_namespace_waits_at_most_one_turn_behind_a_burst():
    queue = FairQueue()
    for i in range(300):
        queue.add(("team-a", f"job-{i}"))
    queue.add(("team-b", "only"))
    assert ("team-b", "only") in [queue.get(timeout=0), queue.get(timeout=0)]


def test_namespaces_take_turns():
    queue = FairQueue()
    for i in range(100):
        queue.add(("team-a", f"job-{i}"))
    queue.add(("team-b", "only"))
    queue.add(("team-c", "only"))
    first_three = [queue.get(timeout=0) for _ in range(3)]
    assert {("team-b", "only"), ("team-c", "only")} <= set(first_three)
    assert [key for key in drain(queue) if key[0] != "team-a"] == []


def test_keys_of_one_namespace_come_out_in_the_order_they_were_added():
    queue = FairQueue()
    names = [f"job-{i}" for i in (3, 1, 2, 0)]
    for name in names:
        queue.add(("team-a", name))
    queue.add(("team-a", "job-3"))  # already queued: keeps its place
    assert [name for _, name in drain(queue)] == names


def test_a_delayed_key_is_ready_only_once_its_time_has_come():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    queue.add_after(("team-a", "cloody"), 5)
    assert (len(queue), queue.waiting()) == (0, 1)
    clock.now += 4.9
    assert queue.get(timeout=0) is None
    clock.now += 0.1
    assert queue.get(timeout=0) == ("team-a", "cloody")
    assert queue.waiting() == 0


def test_the_earlier_time_wins():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    queue.add_after(("team-a", "later-first"), 10)
    queue.add_after(("team-a", "later-first"), 2)
    queue.add_after(("team-a", "sooner-first"), 2)
    queue.add_after(("team-a", "sooner-first"), 10)
    assert queue.waiting() == 2
    clock.now += 2
    assert sorted(drain(queue)) == [("team-a", "later-first"), ("team-a", "sooner-first")]
    clock.now += 10
    assert drain(queue) == []


def test_add_makes_a_delayed_key_ready_at_once_and_drops_its_delay():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    queue.add_after(("team-a", "cloody"), 60)
    queue.add(("team-a", "cloody"))
    assert (len(queue), queue.waiting()) == (1, 0)
    assert drain(queue) == [("team-a", "cloody")]
    clock.now += 60
    assert drain(queue) == []


def test_a_delayed_key_due_while_processing_is_handed_out_again_after_done():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    key = ("team-a", "cloody")
    queue.add(key)
    assert queue.get(timeout=0) == key
    queue.add_after(key, 5)
    clock.now += 5
    assert queue.get(timeout=0) is None
    queue.done(key)
    assert queue.get(timeout=0) == key


def test_add_after_without_delay_adds_now():
    queue = FairQueue(clock=FakeClock())
    queue.add_after(("team-a", "cloody"), 0)
    assert queue.get(timeout=0) == ("team-a", "cloody")


def test_rate_limited_adds_back_off_exponentially_up_to_the_cap_and_forget_resets():
    clock = FakeClock()
    queue = FairQueue(base_delay=0.5, max_delay=5, clock=clock)
    key = ("team-a", "cloody")
    delays = []
    for _ in range(6):
        delays.append(queue.add_rate_limited(key))
        clock.now += delays[-1]
        queue.done(queue.get(timeout=0))
    assert delays == [0.5, 1, 2, 4, 5, 5]
    assert queue.failures(key) == 6
    queue.forget(key)
    assert queue.failures(key) == 0
    assert queue.add_rate_limited(key) == 0.5


def test_a_rate_limited_key_is_not_ready_before_its_backoff():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    key = ("team-a", "cloody")
    queue.add_rate_limited(key)
    assert queue.add_rate_limited(key) == 1.0
    clock.now += 0.4
    assert queue.get(timeout=0) is None  # the first request's 0.5 s still stands
    clock.now += 0.1
    assert queue.get(timeout=0) == key


def test_a_thousand_failures_cap_the_delay_without_overflow():
    queue = FairQueue(max_delay=300, clock=FakeClock())
    delays = [queue.add_rate_limited(("team-a", "cloody")) for _ in range(1100)]
    assert delays[-1] == 300


def test_discard_drops_ready_delayed_dirty_and_failures():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    ready, delayed, running = ("team-a", "ready"), ("team-a", "delayed"), ("team-b", "running")
    queue.add(running)
    assert queue.get(timeout=0) == running
    queue.add(running)  # dirty
    queue.add(ready)
    queue.add_rate_limited(delayed)
    for key in (ready, delayed, running):
        queue.discard(key)
    assert (len(queue), queue.waiting(), queue.processing()) == (0, 0, 1)
    assert queue.failures(delayed) == 0
    queue.done(running)
    clock.now += 3600
    assert drain(queue) == []


def test_a_namespace_emptied_by_discard_gets_a_fair_turn_again():
    queue = FairQueue()
    queue.add(("team-b", "gone"))
    for i in range(5):
        queue.add(("team-a", f"job-{i}"))
    queue.discard(("team-b", "gone"))
    queue.add(("team-b", "new"))
    first_two = [queue.get(timeout=0), queue.get(timeout=0)]
    assert ("team-b", "new") in first_two
    assert sorted(first_two + drain(queue)) == [("team-a", f"job-{i}") for i in range(5)] + [("team-b", "new")]


def test_a_job_re_added_after_discard_while_processing_runs_again():
    queue = FairQueue()
    key = ("team-a", "cloody")
    queue.add(key)
    assert queue.get(timeout=0) == key
    queue.discard(key)
    queue.add(key)  # recreated under the same name
    queue.done(key)
    assert queue.get(timeout=0) == key


def test_shutdown_wakes_a_blocked_get():
    queue, worker, result = blocked_get(timeout=None)
    queue.shutdown()
    worker.join(timeout=10)
    assert not worker.is_alive()
    assert result == [None]
    queue.add(("team-a", "cloody"))
    assert queue.get(timeout=0) is None


def test_an_add_wakes_a_blocked_get():
    queue, worker, result = blocked_get(timeout=None)
    queue.add(("team-a", "cloody"))
    worker.join(timeout=10)
    assert result == [("team-a", "cloody")]


def test_a_blocked_get_wakes_when_an_earlier_delayed_key_is_added():
    queue, worker, result = blocked_get(timeout=30)
    queue.add_after(("team-a", "cloody"), 0.2)
    worker.join(timeout=10)
    assert result == [("team-a", "cloody")]


def test_a_blocked_get_wakes_when_a_delayed_key_comes_due():
    queue = FairQueue()
    queue.add_after(("team-a", "cloody"), 0.2)
    assert queue.get(timeout=10) == ("team-a", "cloody")


def test_ten_thousand_keys_over_many_namespaces_all_come_out_once():
    clock = FakeClock()
    queue = FairQueue(clock=clock)
    keys = [(f"team-{i % 50}", f"job-{i}") for i in range(10_000)]
    for key in keys:
        queue.add(key)
        queue.add_rate_limited(key)  # ready now: the delay adds nothing
    assert (len(queue), queue.waiting()) == (10_000, 0)
    handed_out = drain(queue)
    assert sorted(handed_out) == sorted(keys)
    assert {key[0] for key in handed_out[:50]} == {f"team-{i}" for i in range(50)}
