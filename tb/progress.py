"""What a person sees while something long runs: a build's status with its elapsed time, and a
simulation's progress (messages accounted for, simulated cycles, cycles/s).

On a terminal these are live lines drawn by :mod:`rich`; elsewhere (a log, a pipe, CI) a build
prints one line when it starts and one when it ends, and a simulation nothing extra.

A simulation runs in the simulator's own process: its testbench reports through
:class:`ProgressReport` (a small JSON file named by the environment variable
:data:`PROGRESS_ENV`), which :func:`watch` reads from the process that started it.
"""

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

__all__ = ["PROGRESS_ENV", "status", "watch", "ProgressReport"]

PROGRESS_ENV = "SMTNI_PROGRESS"
_REPORT_INTERVAL_S = 0.25


def _console():
    return Console(stderr=True)


@contextlib.contextmanager
def status(text):
    """Show ``text`` while the body runs, with the elapsed time; then say how long it took."""
    console = _console()
    start = time.monotonic()
    if console.is_terminal:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            progress.add_task(text, total=None)
            yield
    else:
        print(f"{text} ...", file=sys.stderr, flush=True)
        yield
    print(f"{text}: done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def watch(path, description):
    """Draw the progress a simulation reports in the file ``path`` while the body runs (on a
    terminal only); the file is removed first, so stale figures never show."""
    path = Path(path)
    path.unlink(missing_ok=True)
    console = _console()
    if not console.is_terminal:
        yield
        return
    stop = threading.Event()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[cycles]} cycles, {task.fields[rate]} cycles/s"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None, cycles=0, rate=0)

        def poll():
            while not stop.wait(_REPORT_INTERVAL_S):
                try:
                    figures = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                progress.update(task, completed=figures["done"], total=figures["total"],
                                cycles=figures["cycles"], rate=figures["cycles_per_s"])
        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


class ProgressReport:
    """The testbench's side: :meth:`update` writes the figures at most four times a second to
    the file named by :data:`PROGRESS_ENV` (nothing when it is unset)."""

    def __init__(self, total):
        self.total = total
        path = os.environ.get(PROGRESS_ENV)
        self._path = Path(path) if path else None
        self._last = 0.0

    def due(self):
        """Return whether a report would be written now (so that figures are counted only
        then)."""
        return self._path is not None and time.monotonic() - self._last >= _REPORT_INTERVAL_S

    def update(self, done, cycles, cycles_per_s):
        if not self.due():
            return
        self._last = time.monotonic()
        scratch = self._path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"done": done, "total": self.total, "cycles": cycles,
                                       "cycles_per_s": cycles_per_s}))
        scratch.replace(self._path)
