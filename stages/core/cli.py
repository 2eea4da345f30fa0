"""Entry-point wrapper: user errors become one line and a non-zero exit."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from stages.core.params import ParamsError
from stages.core.series import DataError
from stages.core.tracking import TrackingError

__all__ = ["DataError", "ParamsError", "TrackingError", "run"]

USER_ERRORS = (ParamsError, DataError, TrackingError)


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into an exception so that cleanup (temporary files, the
    # MLflow run's KILLED status) runs as it does for Ctrl-C.
    raise KeyboardInterrupt(f"signal {signum}")


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a stage's main(); exit 2 with one line on a params or data error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's banner out of the logs
    signal.signal(signal.SIGTERM, _terminate)
    # A process started in the background by a non-interactive shell inherits
    # SIGINT as ignored, and Python then never raises KeyboardInterrupt: Ctrl-C
    # sent to the process group would leave the stage training. Interrupts
    # always interrupt a stage.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
