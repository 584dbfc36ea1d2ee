"""Progress on stderr: plain lines always, and on a terminal a bar for the phase under way.

Lines are all a log file or a pipe gets. When stderr is a terminal, a long phase (a
party's setup, training, scoring) also shows one bar line below them, redrawn in place:
parties done of all, time spent and an estimate of the time left, from the same phase of
the run the directory last completed or else from the parties done so far. Lines printed
while a bar is shown appear above it. No dependency: a few lines of terminal control.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import IO

# Seconds between redraws while nothing changes (the elapsed time still ticks).
REDRAW_S = 0.5
BAR_WIDTH = 16
CLEAR_LINE = "\r\x1b[K"


def on_terminal(stream: IO[str]) -> bool:
    """Whether `stream` is an interactive terminal (False for files, pipes, and streams
    without a file behind them)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class NoBar:
    """What a phase gets when stderr is not a terminal: nothing is drawn."""

    def update(self, done: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class Bar(NoBar):
    """One phase's bar on a terminal: `label [=====>    ] done/total unit, time, estimate`."""

    def __init__(self, label: str, total: int, stream: IO[str], *, unit: str = "parties",
                 expected_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.stream, self.expected_s, self.clock = stream, expected_s, clock
        self.started = clock()
        self.done = 0
        self.drawn_at = float("-inf")
        self.width = _columns(stream)

    def update(self, done: int | None = None) -> None:
        """Redraw with `done` parties finished (None: only the time moved on); at most
        every REDRAW_S seconds unless the count changed."""
        changed = done is not None and done != self.done
        if done is not None:
            self.done = min(int(done), self.total)
        if changed or self.clock() - self.drawn_at >= REDRAW_S:
            self._draw()

    def write(self, line: str) -> None:
        """Print a line above the bar, then draw the bar again below it."""
        self.stream.write(f"{CLEAR_LINE}{line}\n")
        self._draw()

    def close(self) -> None:
        """Take the bar off the screen (the phase's own last line says how it went)."""
        self.stream.write(CLEAR_LINE)
        self.stream.flush()

    def render(self) -> str:
        elapsed = self.clock() - self.started
        filled = round(BAR_WIDTH * self.done / self.total)
        tip = ">" if 0 < filled < BAR_WIDTH else ""
        bar = ("=" * filled + tip).ljust(BAR_WIDTH)[:BAR_WIDTH]
        text = (f"{self.label} [{bar}] {self.done}/{self.total} {self.unit}, "
                f"{_duration(elapsed)}, {self._estimate(elapsed)}")
        return text[: max(self.width - 1, 20)]

    def _estimate(self, elapsed: float) -> str:
        if self.expected_s and elapsed < self.expected_s:
            return f"about {_duration(self.expected_s - elapsed)} left"
        if 0 < self.done < self.total:
            left = elapsed * (self.total - self.done) / self.done
            return f"about {_duration(left)} left"
        if self.expected_s:
            return f"over last run's {_duration(self.expected_s)}"
        return "estimating"

    def _draw(self) -> None:
        self.stream.write(CLEAR_LINE + self.render())
        self.stream.flush()
        self.drawn_at = self.clock()


_active: Bar | None = None


def line(message: str, stream: IO[str] | None = None) -> None:
    """One line of progress on stderr (above the bar when one is shown)."""
    stream = stream if stream is not None else sys.stderr
    if _active is not None and _active.stream is stream:
        _active.write(message)
    else:
        print(message, file=stream, flush=True)


def close_active() -> None:
    """Take any bar off the screen (a command ending, or interrupted, mid-phase)."""
    if _active is not None:
        _active.close()


def phase_bar(label: str, total: int, expected_s: float | None = None, *,
              unit: str = "parties", stream: IO[str] | None = None) -> NoBar:
    """The bar of a phase that starts now: drawn on a terminal, nothing otherwise. The
    caller calls `update` as parties finish and `close` when the phase ends."""
    global _active
    stream = stream if stream is not None else sys.stderr
    if not on_terminal(stream):
        return NoBar()
    bar = _ActiveBar(label, total, stream, unit=unit, expected_s=expected_s)
    _active = bar
    bar.update()
    return bar


class _ActiveBar(Bar):
    """The bar `line` prints above; closing it ends that."""

    def close(self) -> None:
        global _active
        super().close()
        if _active is self:
            _active = None


def _columns(stream: IO[str]) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 0 else 80


def _duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds} s" if seconds < 600 else f"{round(seconds / 60)} min"
