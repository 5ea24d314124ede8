"""Progress that suits its terminal: a tqdm bar on a TTY, plain lines anywhere else.

CI logs and ``make demo > file`` get one line every few seconds (and one when the bar closes,
at the end of each phase), never carriage-return frames. Every bar of the CLI comes from
``open_bar``; every message printed between bars goes through ``say``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm

PLAIN_SECONDS = 5.0  # at most one plain progress line per bar this often
TTY_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} [{elapsed}{postfix}]"
TTY_SPINNER = "{desc} [{elapsed}{postfix}]"


def is_tty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def say(message: str, file=None) -> None:
    """One line of text, without tearing a bar that is being drawn."""
    file = file or sys.stderr
    if is_tty(file):
        tqdm.write(message, file=file)
    else:
        print(message, file=file, flush=True)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _amount(n: float, unit: str) -> str:
    """``3/8 images``-style amounts; bytes in kB, MB, GB."""
    if unit == "B":
        for prefix in ("", "k", "M", "G"):
            if n < 1000 or prefix == "G":
                return f"{n:.0f} B" if not prefix else f"{n:.1f} {prefix}B"
            n /= 1000
    return str(int(n)) if float(n).is_integer() else f"{n:.1f}"


class PlainBar:
    """Progress as plain lines: the first update, then at most one every ``interval`` seconds,
    and the final state on ``close``."""

    def __init__(self, desc: str, total: float | None, unit: str, file, interval: float = PLAIN_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit, self.file = desc, total, unit, file
        self.interval, self.clock = interval, clock
        self.n, self.detail = 0, ""
        self.started = clock()
        self.printed_at: float | None = None
        self.printed: tuple | None = None

    def update_to(self, n: float, total: float | None = None, detail: str | None = None) -> None:
        self.n = n
        if total is not None:
            self.total = total
        if detail is not None:
            self.detail = detail
        now = self.clock()
        if self.printed_at is None or now - self.printed_at >= self.interval:
            self._print(now)

    def update(self, delta: float) -> None:
        self.update_to(self.n + delta)

    def line(self, now: float) -> str:
        unit = "" if self.unit == "B" else f" {self.unit}".rstrip()
        if self.total:
            done = f"{_amount(self.n, self.unit)}/{_amount(self.total, self.unit)}{unit}"
            text = f"{self.desc}: {done} ({100 * self.n / self.total:.0f}%)"
        elif self.n:
            text = f"{self.desc}: {_amount(self.n, self.unit)}{unit}"
        else:
            text = self.desc
        text = f"{text} [{duration(now - self.started)}]"
        return f"{text} {self.detail}" if self.detail else text

    def _print(self, now: float) -> None:
        self.printed_at, self.printed = now, (self.n, self.total, self.detail)
        print(self.line(now), file=self.file, flush=True)

    def close(self) -> None:
        if self.printed != (self.n, self.total, self.detail) or self.printed_at is None:
            self._print(self.clock())


class TtyBar:
    """A tqdm bar (or a spinner without a total) with the same interface as ``PlainBar``."""

    def __init__(self, desc: str, total: float | None, unit: str, file, leave: bool = True):
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=file, dynamic_ncols=True, mininterval=0,
                        leave=leave, unit_scale=unit == "B",
                        bar_format=TTY_FORMAT if total and unit != "B" else None if total else TTY_SPINNER)

    @property
    def n(self) -> float:
        return self.bar.n

    def update_to(self, n: float, total: float | None = None, detail: str | None = None) -> None:
        if total is not None:
            self.bar.total = total
        self.bar.n = n
        if detail is not None:
            self.bar.set_postfix_str(detail, refresh=False)
        self.bar.refresh()

    def update(self, delta: float) -> None:
        self.bar.update(delta)

    def close(self) -> None:
        self.bar.close()


def open_bar(desc: str, total: float | None = None, unit: str = "", file=None, *, leave: bool = True,
             interval: float | None = None) -> PlainBar | TtyBar:
    """A bar on ``file`` (default stderr): tqdm when it is a terminal, plain lines otherwise, at
    most one every ``interval`` seconds (default ``PLAIN_SECONDS``)."""
    file = file or sys.stderr
    if is_tty(file):
        return TtyBar(desc, total, unit, file, leave=leave)
    return PlainBar(desc, total, unit, file, interval=PLAIN_SECONDS if interval is None else interval)
