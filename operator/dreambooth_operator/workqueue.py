"""A work queue of job keys for the reconcile workers, fair across namespaces.

It keeps client-go's workqueue semantics: a key queued twice is handed out once, a key is never
handed to two workers at once (one added while processing is queued again when its pass ends),
and keys can be added after a delay or with a per-key exponential backoff after a failed pass.
On top of that, ready keys are handed out round-robin over namespaces, FIFO within one, so one
tenant's burst of a thousand jobs does not starve another tenant's single job.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

Key = tuple[str, str]  # (namespace, name)

# 2.0 ** 1024 overflows a float; long before that the delay is capped at max_delay anyway.
_MAX_EXPONENT = 1023


class FairQueue:
    """Each key is in at most one of: ready, delayed, dirty (queued again when its pass ends).

    Ready and dirty count as "due now", so a delayed request for such a key adds nothing, and an
    earlier request replaces a later one. Processing is orthogonal: a delayed key that comes due
    while its pass runs becomes dirty.
    """

    def __init__(self, *, base_delay: float = 0.5, max_delay: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: dict[str, OrderedDict[Key, None]] = {}  # in _turns, possibly emptied by discard
        self._turns: deque[str] = deque()  # namespaces in _ready, each once, next turn first
        self._ready_count = 0
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._due: dict[Key, float] = {}  # delayed keys; the truth the heap is checked against
        self._heap: list[tuple[float, Key]] = []  # may hold stale entries (lazy deletion)
        self._failures: dict[Key, int] = {}
        self._shut_down = False

    def add(self, key: Key) -> None:
        with self._cond:
            self._drop_delayed(key)
            self._queue(key)

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if key in self._dirty or self._is_ready(key):
                return  # due now already
            due = self._clock() + delay
            current = self._due.get(key)
            if current is not None and current <= due:
                return  # the earlier time wins
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            self._compact()
            if self._heap[0] == (due, key):
                self._cond.notify_all()  # blocked getters wait for the earliest due key; it moved

    def add_rate_limited(self, key: Key) -> float:
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(self._max_delay, self._base_delay * 2.0 ** min(failures, _MAX_EXPONENT))
            self.add_after(key, delay)  # the condition's lock is reentrant
            return delay

    def forget(self, key: Key) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: Key) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def discard(self, key: Key) -> None:
        with self._cond:
            if self._is_ready(key):
                del self._ready[key[0]][key]  # an emptied namespace leaves _turns on its next turn
                self._ready_count -= 1
            self._drop_delayed(key)
            self._dirty.discard(key)
            self._failures.pop(key, None)

    def get(self, timeout: float | None = None) -> Key | None:
        # The timeout is real time even when delays run on an injected clock, so a test's
        # frozen clock cannot make get() wait forever.
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._shut_down:
                self._promote_due()
                if self._ready_count:
                    key = self._pop_ready()
                    self._processing.add(key)
                    if self._ready_count:
                        self._cond.notify()  # in case this getter took a wake-up meant for another
                    return key
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                if self._heap:
                    until_due = max(0.0, self._heap[0][0] - self._clock())
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)
            return None

    def done(self, key: Key) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.remove(key)
                self._push_ready(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shut_down = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            self._promote_due()
            return self._ready_count

    def waiting(self) -> int:
        with self._cond:
            self._promote_due()
            return len(self._due)

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def _is_ready(self, key: Key) -> bool:
        keys = self._ready.get(key[0])
        return keys is not None and key in keys

    def _queue(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif not self._is_ready(key):
            self._push_ready(key)

    def _push_ready(self, key: Key) -> None:
        keys = self._ready.get(key[0])
        if keys is None:
            keys = self._ready[key[0]] = OrderedDict()
            self._turns.append(key[0])
        keys[key] = None
        self._ready_count += 1
        self._cond.notify()

    def _pop_ready(self) -> Key:
        while True:
            namespace = self._turns.popleft()
            keys = self._ready[namespace]
            if keys:
                break
            del self._ready[namespace]  # emptied by discard
        key, _ = keys.popitem(last=False)  # O(1) on an OrderedDict, unlike next(iter(dict))
        if keys:
            self._turns.append(namespace)
        else:
            del self._ready[namespace]
        self._ready_count -= 1
        return key

    def _drop_delayed(self, key: Key) -> None:
        if self._due.pop(key, None) is not None:
            self._compact()

    def _promote_due(self) -> None:
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                self._queue(key)
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # a stale head would cut a getter's wait short for nothing

    def _compact(self) -> None:
        # Stale entries of keys added or discarded while delayed would otherwise pile up.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(due, key) for key, due in self._due.items()]
            heapq.heapify(self._heap)
