"""SIGTERM and Ctrl-C: stop within seconds and leave no process behind.

Two things stood in the way. Python's default SIGTERM kills the process without running
`atexit`, which is where Prefect stops the temporary server of ephemeral mode: it was left
orphaned. And unwinding waits for the task runner's worker threads, so a task sleeping in a
retry delay (or translating a shard) held the exit back for up to 90 s.

So the CLI (`main` runs the app through `run`):
- raises `Terminated` (a KeyboardInterrupt) in the main thread on SIGTERM, as Python does for
  SIGINT, so Prefect's engine marks the run Crashed and every context manager unwinds;
- hears every signal through `signal.set_wakeup_fd` as well, on a watcher thread, because
  during a flow Prefect installs its own SIGTERM handler and the main thread may be stuck in a
  thread join: after `GRACE_S` the watcher ends the process itself;
- ends through `finish()`: terminate the child processes (the temporary Prefect server), print
  one line, exit 128 + signal number without waiting for worker threads. Nothing a rerun needs
  is lost: outputs are written atomically, and a killed shard is redone (as after SIGKILL).
A second Ctrl-C ends at once.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

GRACE_S = 5.0

received: int | None = None
_lock = threading.Lock()
_finishing = False


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same cleanup runs."""


def _handler(signum: int, frame) -> None:
    _note(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(f"signal {signum}")


def _note(signum: int) -> bool:
    """Record the first signal and arm the deadline; True if this was the first."""
    global received
    with _lock:
        if received is not None:
            return False
        received = signum
    timer = threading.Timer(GRACE_S, finish, args=(128 + signum,))
    timer.daemon = True
    timer.start()
    return True


def _watch(sock: socket.socket) -> None:
    """Sees each delivery once (the Python-level handler may be Prefect's, or not run yet)."""
    interrupts = 0
    while True:
        try:
            data = sock.recv(64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                _note(signum)
            if signum == signal.SIGINT:
                interrupts += 1
                if interrupts > 1:
                    finish(128 + signum)


def install() -> None:
    """Call once, from the main thread, before any work (the CLI's `main` does)."""
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(reader,), name="ruinstruct-signals", daemon=True).start()
    _keep.extend((reader, writer))


_keep: list[socket.socket] = []  # the wakeup socket pair lives as long as the process


def installed() -> bool:
    return bool(_keep)


def run(fn: Callable[[], T]) -> T:
    """`fn()` (the CLI app) with SIGTERM and SIGINT handled as above; a signalled run ends here
    through `finish`, whatever `fn` raised or returned."""
    install()
    try:
        return fn()
    finally:
        if received is not None:
            finish(128 + received)


def stop_children(timeout: float = 3.0) -> None:
    """Terminate this process's descendants (the temporary Prefect server, workers), then kill
    what is still there after `timeout`."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    stop_processes(children, timeout)


def stop_tree(pid: int, timeout: float = 5.0) -> None:
    """Terminate process `pid` and its descendants (a training process and torchrun's workers),
    then kill what is still there after `timeout`."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    stop_processes(family, timeout)


def stop_processes(procs: list, timeout: float) -> None:
    """Terminate `procs` (psutil.Process), then kill what is still there after `timeout`."""
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout)


def finish(code: int) -> None:
    """End the process now: children first, one line on stderr, exit `code`. Worker threads are
    not waited for (a translation or a retry delay could take minutes)."""
    global _finishing
    with _lock:
        if _finishing:
            return
        _finishing = True
    try:
        stop_children()
        name = signal.Signals(code - 128).name if code > 128 else f"exit {code}"
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe must not keep us alive
                pass
        os.write(2, f"ruinstruct: interrupted by {name}; a rerun resumes from what was written\n".encode())
    finally:
        os._exit(code)
