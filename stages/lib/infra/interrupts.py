"""Ctrl-C and SIGTERM stop a stage, even when Python drops the first KeyboardInterrupt.

Python runs a signal's handler in whatever Python code the main thread runs
next. When that code is a finaliser (a ``__del__`` or a weakref callback:
TensorFlow runs several at every epoch, as it frees the last epoch's dataset
iterator), the KeyboardInterrupt it raises is printed as "Exception ignored"
and dropped, and the stage goes on training (CI met this once: a stage trained
on for two minutes after its SIGINT). So the handler also sets a latch, and
the long loops (every training batch, every backtest origin) call ``check()``,
which raises again if a signal came and the stage is still running, and so
does ``cli.run`` once the stage's work returns, so that its exit says 130. The drop
itself is told in one line rather than as a traceback.

Inside ``deferred()`` (a Keras fit) the handler only sets the latch, and the
exception is raised at the next batch's ``check()``: raised at any bytecode
inside TensorFlow's Python layer, it once aborted a member with glibc's
"corrupted size vs. prev_size" before its MLflow run was ended (1 run in 6 of
tests/test_faults.py's SIGINT case; the run stayed RUNNING). Raised from a
callback, it leaves the way any callback's error does. The price: the parts of
a fit with no batch (tracing or compiling the first step, restoring the best
weights) run to their end before it stops, seconds at most in this project's
models; a forecast's forward passes are not deferred.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["check", "deferred", "install", "reset"]

_received: int | None = None
_deferring = 0  # depth of deferred() blocks
_next_hook = sys.unraisablehook


def _on_signal(signum: int, frame: object) -> None:
    # SIGTERM becomes the same exception as Ctrl-C, so that cleanup (temporary
    # files, the MLflow run's KILLED status) runs the same way for both.
    global _received
    if _received is not None:
        # Already stopping: a second signal would cut short the cleanup of the first (the MLflow
        # run's KILLED status, the temporary folder). Ctrl-C reaches a stage and the members it
        # started, and the stage then stops its members with SIGTERM (stages/lib/infra/parallel.py).
        return
    _received = signum
    if _deferring:
        return  # check() raises it at the next step
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    """Route SIGINT and SIGTERM to KeyboardInterrupt, latched; clears an earlier latch.

    SIGINT is set even where it was inherited as ignored: a process started in
    the background by a non-interactive shell has it so, and Ctrl-C sent to its
    process group would then leave the stage training.
    """
    reset()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    global _next_hook
    if sys.unraisablehook is not _report_dropped:  # once, however often a process calls install()
        _next_hook, sys.unraisablehook = sys.unraisablehook, _report_dropped


def _report_dropped(unraisable: sys.UnraisableHookArgs) -> None:
    # One line instead of Python's "Exception ignored in ..." traceback through
    # TensorFlow's internals, which reads like a crash; other reports go to the
    # hook that was there before (Python's own, or a test runner's).
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _received is not None:
        print(f"signal {_received} arrived while Python was freeing an object; stopping at the next step",
              file=sys.stderr, flush=True)
        return
    _next_hook(unraisable)


def reset() -> None:
    """Forget a signal whose KeyboardInterrupt has been handled."""
    global _received
    _received = None


def check() -> None:
    """Raise KeyboardInterrupt if a signal came since ``install()`` and the work is still going."""
    if _received is not None:
        raise KeyboardInterrupt(f"signal {_received} (raised again: its first exception was dropped)")


@contextmanager
def deferred() -> Iterator[None]:
    """Within: a signal only sets the latch; the work calls ``check()`` at its steps (a Keras fit: every
    batch), and leaving the block raises a signal that came after the last one."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    check()
