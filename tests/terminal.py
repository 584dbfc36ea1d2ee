"""Run a command with its stderr on a pseudo-terminal, as an operator's shell would."""

from __future__ import annotations

import os
import pty
import subprocess
import threading
from collections.abc import Sequence


def run_on_terminal(cmd: Sequence[str], *, timeout: float,
                    env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `cmd`, with stdout on a pipe and stderr on a
    pseudo-terminal (read while it runs, so that it never blocks on a full buffer)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, chunks), daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO once the command has closed its side
            return
        if not data:
            return
        chunks.append(data)
