"""Progress on stderr: a bar with an estimate on a terminal, the plain lines otherwise."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from terminal import run_on_terminal

from federation import progress
from federation.progress import Bar, NoBar, line, phase_bar

REPO = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (what `isatty` reports is all the bar reads)."""

    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_not_a_terminal_gets_the_plain_lines_only():
    stream = io.StringIO()
    bar = phase_bar("[train] setup", 3, 20.0, stream=stream)
    assert isinstance(bar, NoBar) and not isinstance(bar, Bar)
    line("[train] setup: bank01 answered after 1.0 s (1 of 3)", stream)
    bar.update(1)
    bar.close()
    assert stream.getvalue() == "[train] setup: bank01 answered after 1.0 s (1 of 3)\n"


def test_a_terminal_gets_a_bar_under_the_lines():
    stream = _Terminal()
    bar = phase_bar("[train] setup", 3, None, stream=stream)
    try:
        assert isinstance(bar, Bar)
        line("[train] setup: swift answered after 2.0 s (1 of 3)", stream)
        bar.update(1)
    finally:
        bar.close()
    out = stream.getvalue()
    assert "\r\x1b[K[train] setup: swift answered after 2.0 s (1 of 3)\n" in out
    assert "[train] setup [" in out and "1/3 parties" in out
    assert out.endswith("\r\x1b[K")  # the bar is gone once the phase ends
    assert progress._active is None
    line("after the phase", stream)
    assert stream.getvalue().endswith("after the phase\n")


def test_the_estimate_comes_from_the_last_run_else_from_the_parties_done():
    clock = _Clock()
    bar = Bar("[test] status", 4, _Terminal(), expected_s=30.0, clock=clock)
    clock.now += 10
    assert bar.render().endswith("10 s, about 20 s left")
    clock.now += 25
    bar.update(2)
    assert "2/4 parties" in bar.render() and "about 35 s left" in bar.render()
    bar.update(4)
    assert bar.render().endswith("35 s, over last run's 30 s")
    first = Bar("[train] noise", 2, _Terminal(), clock=clock)
    assert first.render().endswith("estimating")
    half = Bar("x", 2, _Terminal(), clock=clock)
    half.update(1)
    assert "[" + "=" * 8 + ">" + " " * 7 + "]" in half.render()


def test_redraws_are_throttled_while_nothing_changes():
    clock, stream = _Clock(), _Terminal()
    bar = Bar("[train] aggregate", 1, stream, clock=clock)
    bar.update()
    drawn = stream.getvalue().count("\r\x1b[K")
    clock.now += 0.1
    bar.update()
    assert stream.getvalue().count("\r\x1b[K") == drawn
    clock.now += 1.0
    bar.update()
    assert stream.getvalue().count("\r\x1b[K") == drawn + 1


_SCRIPT = """
from federation.cli import progress
from federation.progress import phase_bar
bar = phase_bar("[train] setup", 2, None)
progress("[train] setup: bank01 answered after 0.5 s (1 of 2)")
bar.update(1)
bar.close()
progress("[train] setup: done in 1.0 s")
"""


def _stderr_of_script(on_pty: bool) -> str:
    """Run the script with stderr on a pseudo-terminal or on a pipe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if on_pty:
        code, _, err = run_on_terminal([sys.executable, "-c", _SCRIPT], timeout=60, env=env)
    else:
        done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True,
                              text=True, timeout=60, env=env)
        code, err = done.returncode, done.stderr
    assert code == 0, err
    return err


def test_a_real_pseudo_terminal_is_detected_and_a_pipe_is_not():
    tty = _stderr_of_script(on_pty=True)
    assert "1/2 parties" in tty and "\x1b[K" in tty
    assert "bank01 answered after 0.5 s (1 of 2)" in tty and "done in 1.0 s" in tty
    piped = _stderr_of_script(on_pty=False)
    assert piped == ("[train] setup: bank01 answered after 0.5 s (1 of 2)\n"
                     "[train] setup: done in 1.0 s\n")
