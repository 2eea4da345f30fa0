"""The errors a user can cause, each already phrased as one line.

A leaf: it imports nothing of the project, so every layer can raise these and
the entry-point wrapper (infra/cli.py) can catch them without importing the
layers that raise them.
"""

from __future__ import annotations


class ParamsError(ValueError):
    """A params.yaml problem, naming the key."""


class DataError(ValueError):
    """A problem with an input file, naming the file and the line or column."""


class TrackingError(RuntimeError):
    """The MLflow store cannot be used; one line naming the URI."""


class CommandError(RuntimeError):
    """A tool command (compare, horizon) cannot go on; one line for the user."""


USER_ERRORS = (ParamsError, DataError, TrackingError, CommandError)
