"""Where the per-series work runs: in this process, over this machine's cores (joblib), or on a Dask cluster.

Every pool of the pipeline (the series of a panel, AutoARIMA's refits over the
origins, the ARIMA order grid) goes through ``map_ordered``: ``fn(item, *args)``
for every item, the results back in the items' order. Each result depends on its
item and ``args`` only, never on where or when it ran, so the outputs are byte for
byte the same on one core, on this machine's cores and on a cluster
(tests/test_cluster.py), and DVC's hashes do not change: the engine is not a param.

``DASK_SCHEDULER_ADDRESS`` (Dask's own name for the setting, so that Dask's tools
read it too) sends the pools to a running cluster: ``tcp://host:8786``. Unset, the
pipeline runs as it always has, with nothing to start. Why Dask's ``distributed``
rather than a pool of our own: it reruns the tasks of a worker that dies, it has
a dashboard, and teams already run it (docs/team.md).

What a cluster needs, and what this module checks (one line naming the address
or the worker otherwise):

* the scheduler answers within ``CONNECT_TIMEOUT_S``, at the stage's start;
* every worker runs one task at a time (``--nthreads 1``): tasks of one process
  share its caches and its BLAS settings, and statsmodels' fits hold the GIL anyway;
* every worker runs the same ``stages`` code as the stage, checked at the start
  and again by every task (a worker may join, or restart from another checkout,
  mid-run): a worker started from an older checkout would give other numbers.

Each task runs with ``PIPELINE_CORES=1`` and without the cluster's address, so a
task never opens a pool of its own: one task is one core, which is what the
scheduler counts on. Outputs are the same as here on workers with the same CPU
family and the same pinned wheels (numpy picks its kernels by CPU at run time).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stages.lib.errors import CommandError

ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 5
WORKER_WAIT_S = 30  # a scheduler started a moment ago: its workers are still starting
WATCH_EVERY_S = 5  # how often a stage on the cluster looks whether any worker is left
PACKAGE = Path(__file__).resolve().parents[2]  # the stages/ package


class ClusterError(CommandError):
    """The Dask cluster cannot run the stage's work; one line naming the address or the worker."""


def address() -> str | None:
    """The scheduler's address where the user set one, else None (this machine)."""
    return os.environ.get(ENV, "").strip() or None


def where(cores: int) -> str:
    """Where a stage's pool runs, for its first log line: ``2 cores`` or ``the Dask cluster tcp://...``.

    On a cluster this connects (and checks it), so that a scheduler that does not
    answer stops the stage before it opens its MLflow run or reads its data."""
    if address() is None:
        return f"{cores} cores"
    _connect()
    return f"the Dask cluster {address()}"


@functools.cache
def code_version(package: Path = PACKAGE) -> str:
    """A digest of every .py file of the stages package, taken once per process: on a worker, at its first
    task, so that it stands for the code the worker has loaded, not what a later checkout put on disk."""
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_client: Any = None


def _connect() -> Any:
    """The stage's one client of the cluster at ``address()``: connected, checked and announced once per process."""
    global _client
    if _client is not None:
        return _client
    from distributed import Client

    where = address()
    try:
        client = Client(where, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except Exception as exc:  # refused, timed out, not an address, or something else answering: one line
        raise ClusterError(f"{ENV}={where}: no Dask scheduler answered within {CONNECT_TIMEOUT_S} s "
                           f"({type(exc).__name__}); start one (docs/team.md) or unset {ENV} to run here") from None
    try:
        _check_workers(client, where)
    except BaseException:
        client.close()
        raise
    threads = sum(client.nthreads().values())
    print(f"Dask cluster {where}: {len(client.nthreads())} workers, {threads} threads; "
          f"dashboard {client.dashboard_link}", flush=True)
    _client = client
    atexit.register(_disconnect)
    return client


def _check_workers(client: Any, where: str) -> None:
    if not client.nthreads():
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise ClusterError(f"{ENV}={where}: the scheduler has no worker, and none joined within {WORKER_WAIT_S} s; "
                               "start one: dask worker " + where) from None
    threaded = sorted(w for w, n in client.nthreads().items() if n != 1)
    if threaded:
        raise ClusterError(f"{ENV}={where}: worker {threaded[0]} runs {client.nthreads()[threaded[0]]} tasks at once; "
                           "start every worker with --nthreads 1 (and --nworkers N for N cores: docs/team.md)")
    versions = client.run(code_version, on_error="return")
    for worker, version in sorted(versions.items()):
        if isinstance(version, BaseException):  # Dask hands back a worker's ModuleNotFoundError, or its death
            raise ClusterError(f"{ENV}={where}: worker {worker} cannot run the project's stages package "
                               f"({type(version).__name__}: {version}); start each worker in the repository root "
                               "with PYTHONPATH=. (docs/team.md)")
        if version != code_version():
            raise ClusterError(_stale(where, worker, version))


def _stale(where: str, worker: str, version: str) -> str:
    return (f"{ENV}={where}: worker {worker} runs other stages code than this stage ({version} against "
            f"{code_version()}): restart it from this checkout")


def _disconnect() -> None:
    global _client
    if _client is not None:
        client, _client = _client, None
        try:
            client.close(timeout=5)
        except Exception:  # at exit: a failed close must not print a traceback under the stage's last line
            pass


def _abandon() -> None:
    """Drop the client of a scheduler that is gone, quietly: its reconnection attempts would print
    tracebacks under the stage's one-line error."""
    import logging

    global _client
    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"] + ["distributed"]:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    if _client is not None:
        client, _client = _client, None
        try:
            client.close(timeout=1)
        except Exception:  # closing a client of a dead scheduler may time out; the stage is stopping anyway
            pass


def slots(local: int) -> int:
    """How many tasks can run at once: the cluster's threads when one is set, else ``local`` (this machine's)."""
    if address() is None:
        return local
    return max(1, sum(_connect().nthreads().values()))


# What crosses the cluster goes as pickle protocol 4 bytes, which unpickle into fresh arrays. Dask's own
# serialisation hands a numpy array over as a view of its network buffer, at any byte offset, and numpy
# sums an array that starts 8 bytes off a 16-byte boundary in another order: Theta's forecasts changed in
# their last digit on a worker (measured; stages/lib/panel/run.py copies each series for the same reason).
PROTOCOL = 4


def alone(payload: bytes) -> bytes:
    """``fn(item, *args)`` of a pickled ``(code, fn, item, args)``, in a Dask worker, with one core and no
    cluster of its own (see the module's docstring); the result pickled the same way. A worker whose code is
    not the stage's refuses the task, naming itself."""
    from threadpoolctl import threadpool_limits

    code, fn, item, args = pickle.loads(payload)
    if code != code_version():
        from distributed import get_worker

        raise ClusterError(_stale(address() or "the cluster", get_worker().address, code_version()))
    # For good: the worker process runs nothing but these tasks, one at a time (--nthreads 1, checked).
    os.environ["PIPELINE_CORES"] = "1"
    os.environ.pop(ENV, None)
    # BLAS on one thread, as in joblib's workers: a task is one core, which is what the scheduler counts on.
    with threadpool_limits(limits=1):
        return pickle.dumps(fn(item, *args), protocol=PROTOCOL)


def map_ordered(fn: Callable, items: Sequence, args: tuple = (), workers: int = 1,
                on_done: Callable[[Any], None] | None = None, name: str = "task") -> list:
    """``[fn(item, *args) for item in items]``: on the cluster where one is set, else over ``workers`` local
    processes (joblib), else here.

    ``on_done(result)`` is called as each result arrives (progress lines). Fewer than
    two items run here; so do fewer than two workers without a cluster. ``name``
    prefixes the cluster's task keys (with ':' for '-'), so that the dashboard says
    which stage a task belongs to.
    """
    on_done = on_done or (lambda result: None)
    if len(items) >= 2 and address() is not None:
        return _on_cluster(fn, items, args, on_done, name)
    if len(items) < 2 or workers < 2:
        results = (fn(item, *args) for item in items)
    else:
        from joblib import Parallel, delayed

        # joblib's processes, not threads: statsmodels' filters hold the GIL; joblib also keeps each
        # worker's BLAS to one thread, without which two workers ran 3x slower than one process.
        results = Parallel(n_jobs=workers, return_as="generator")(delayed(fn)(item, *args) for item in items)
    done = []
    for result in results:
        done.append(result)
        on_done(result)
    return done


def no_worker_line(where: str, since_s: float) -> str:
    return (f"Dask cluster {where}: no worker for {since_s:.0f} s, the stage's tasks wait for one: start one "
            f"(dask worker {where}, docs/team.md) or press Ctrl-C")


def _watch_workers(client: Any, where: str, stop: threading.Event, every: float = WATCH_EVERY_S,
                   patience: float = WORKER_WAIT_S) -> None:
    """Say once, while the stage waits, that no worker has been on the cluster for ``patience`` s (every one
    died or was stopped): Dask keeps the tasks for workers to come, as an autoscaling cluster wants, but on a
    fixed one the stage would otherwise wait without a word. Runs in a thread beside the stage's loop."""
    empty_since, said = None, False
    while not stop.wait(every):
        try:
            workers = client.nthreads()
        except Exception:
            if client.status in ("closing", "closed"):  # the stage is done with the cluster, or lost it
                return
            continue  # a busy scheduler's slow answer: look again
        if workers:
            empty_since, said = None, False
            continue
        empty_since = empty_since or time.monotonic()
        if not said and time.monotonic() - empty_since >= patience:
            if stop.is_set():  # the stage's loop ended while the scheduler answered: nothing to wait for
                return
            print(no_worker_line(where, time.monotonic() - empty_since), flush=True)
            said = True


def _on_cluster(fn: Callable, items: Sequence, args: tuple, on_done: Callable, name: str) -> list:
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    client = _connect()
    where = address()
    futures: list = []
    results: list = [None] * len(items)
    run = uuid.uuid4().hex[:12]  # keys unique to this call: a key the scheduler knows would return its result
    # Dask groups tasks by the key's prefix up to the first '-'-separated word that is not all letters, which
    # would cut "panel_model@m3_yearly-lstm_series" at the panel: with ':' for '-', the whole stage name is it.
    prefix = name.replace("-", ":")
    stop = threading.Event()
    threading.Thread(target=_watch_workers, args=(client, where, stop), daemon=True).start()
    try:
        # One task per item: a worker receives its own items, never the whole panel. A worker that dies has its
        # tasks rerun on another (Dask's own bookkeeping).
        futures = [client.submit(alone, pickle.dumps((code_version(), fn, item, args), protocol=PROTOCOL),
                                 key=f"{prefix}-{run}-{i}") for i, item in enumerate(items)]
        index = {future.key: i for i, future in enumerate(futures)}
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            if future.status == "error":
                break  # the task's own exception: raised below, as it would be here
            results[i] = pickle.loads(future.result())
            futures[i] = None  # released: the worker frees it, and a worker lost later need not recompute it
            on_done(results[i])
        else:
            return results
    except KeyboardInterrupt:
        # Ctrl-C: the cluster drops this stage's queued tasks (running ones finish their chunk) before it exits.
        client.cancel([f for f in futures if f is not None])
        raise
    except KilledWorker as exc:
        client.cancel([f for f in futures if f is not None])
        raise ClusterError(f"{ENV}={where}: {exc.args[0] if exc.args else 'a task'} killed every worker that "
                           "ran it (out of memory?); nothing written") from None
    except (FutureCancelledError, OSError, TimeoutError) as exc:
        _abandon()
        raise ClusterError(f"{ENV}={where}: lost the Dask scheduler mid-run ({type(exc).__name__}); "
                           "nothing written, run the stage again") from None
    finally:
        stop.set()
    error = future.exception()  # a task failed: its own exception, raised as here (a DataError is one line)
    client.cancel([f for f in futures if f is not None and f is not future])
    if isinstance(error, RuntimeError) and "deserialization of the task graph" in str(error):
        raise ClusterError(f"{ENV}={where}: the scheduler cannot import the project's stages package (it unpickles "
                           "every task); start it in the repository root with PYTHONPATH=. (docs/team.md)") from None
    raise error
