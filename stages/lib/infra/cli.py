"""Entry-point wrapper: user errors become one line and a non-zero exit."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from stages.lib.errors import USER_ERRORS, CommandError
from stages.lib.infra import interrupts


def dvc_json(*args: str, timeout: float | None = None) -> Any:
    """Run `dvc <args> --json` and parse its output; a DVC failure, or no answer within ``timeout`` seconds
    (the process is killed), becomes one CommandError line."""
    try:
        done = subprocess.run(["dvc", *args, "--json"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandError(f"dvc {' '.join(args)}: no answer in {timeout:g} s") from None
    if done.returncode != 0:
        reason = next((line for line in done.stderr.splitlines() if line.startswith("ERROR")), done.stderr.strip())
        raise CommandError(f"dvc {' '.join(args)}: {reason or 'failed'}")
    return json.loads(done.stdout or "null")


def exit_now(code: int) -> NoReturn:
    """End the stage's process as Python's own exit does, minus freeing the modules.

    That last step takes seconds in a process that used TensorFlow, a
    noticeable part of a `dvc repro` that starts 25 such processes (docs/speed.md).
    Everything before
    it still runs, in the interpreter's order: threads are joined and their exit
    hooks run (joblib's workers are stopped there; skipped, they would hold the
    stage's output pipe open and DVC would wait minutes for them), then the
    ``atexit`` handlers (MLflow, logging), then the output streams are flushed.
    """
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); exit 2 with one line on a params or data error.

    Without ``argv`` this is the process's entry point: main() reads the command
    line and the process ends here. With ``argv`` (tests, other tools) errors
    raise SystemExit and success returns.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's banner out of the logs
    interrupts.install()
    code = 0
    try:
        main(argv)
        # A signal whose exception Python dropped after the last check: the
        # work is done, but the user asked to stop, and DVC (which ignores
        # SIGINT while a stage runs) would otherwise go on to the next stage.
        interrupts.check()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        interrupts.reset()
        print("interrupted", file=sys.stderr)
        code = 130
    if argv is None:
        exit_now(code)
    if code:
        sys.exit(code)
