"""How many cores a stage's process may use: the size of its worker pools, never its numbers.

A stage that runs its members side by side (stages/lib/infra/parallel.py) gives
each member its share in ``PIPELINE_CORES``, so that a member's own pool (the
ARIMA order search, AutoARIMA's refits) does not start a second worker on a core
another member is using: three busy processes on two cores made an El Nino
ARIMA backtest 1.7x as slow. Every pool returns its results in order, so the
outputs are the same on any number of cores (tests/test_forecasters.py).
"""

from __future__ import annotations

import os

from stages.lib.errors import CommandError

ENV = "PIPELINE_CORES"


def cores() -> int:
    """``PIPELINE_CORES`` where set, else the cores the OS lets this process run on."""
    value = os.environ.get(ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise CommandError(f"{ENV}={value!r}: expected a whole number of cores, 1 or more")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
