"""A real PostgreSQL and a real `mlflow server` on it, on loopback, for tests and the tracking benchmark.

PostgreSQL refuses to run as root, so when the tests run as root its
programs run as the Debian package's ``postgres`` user; its data directory is
a temporary folder, it listens on 127.0.0.1 only, on a free port, with trust
authentication (nothing but this machine can reach it). Every process is
started in its own session and killed with its group when the context exits,
also when the test fails.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or where the Debian package puts them."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # a link on PATH leads to the folder with all of them
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> dict:
    """Popen arguments that run PostgreSQL as an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": pwd.getpwnam("postgres").pw_gid}


def _wait(check, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s\n{tail}")


def _stop_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


@contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A throwaway PostgreSQL cluster with one database; yields its SQLAlchemy URI."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb)")
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    as_user = _as_user()
    if as_user:
        os.chmod(root, 0o755)
        shutil.chown(root, user="postgres", group=as_user["group"])
    data, log, port = root / "data", root / "server.log", free_port()
    user = "mlflow"
    server = None
    try:
        subprocess.run([bindir / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, **as_user)
        server = subprocess.Popen(
            [bindir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", root,
             "-c", "fsync=off", "-c", "full_page_writes=off"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, **as_user)

        def ready() -> bool:
            return subprocess.run([bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                                  capture_output=True).returncode == 0

        _wait(ready, "PostgreSQL", 30, log)
        subprocess.run([bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
                       check=True, capture_output=True)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        if server is not None:
            _stop_group(server)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on a backend store, proxying artifacts to a folder; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="mlflow-server-")) / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
         "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait(ready, "mlflow server", 120, log)
        yield url
    finally:
        _stop_group(process)
        shutil.rmtree(log.parent, ignore_errors=True)


class DaskCluster(NamedTuple):
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


@contextmanager
def dask_cluster(workers: int = 2, pythonpath: Path | None = None, nthreads: int = 1,
                 scheduler_path: bool = True) -> Iterator[DaskCluster]:
    """A real `dask scheduler` and ``workers`` real `dask worker` processes on loopback; yields the scheduler's
    address and the processes (a test may kill one). Each worker runs ``nthreads`` tasks at a time, without a
    nanny (a killed worker stays dead, as a lost machine would), with ``pythonpath`` (the project) importable;
    so has the scheduler (it unpickles every task), unless ``scheduler_path`` is False."""
    from distributed import Client

    root = Path(tempfile.mkdtemp(prefix="dask-"))
    bare = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DASK_SCHEDULER_ADDRESS")}
    # Workers as docs/team.md starts them: without Dask's statistical profiler, which samples the running
    # task's stack every 10 ms and costs pure-Python forecasters (statsmodels) CPU time under the GIL.
    env = {**bare, "PYTHONPATH": str(pythonpath or Path(__file__).resolve().parents[1]),
           "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    dask = str(Path(sys.executable).parent / "dask")  # the command a team runs (docs/team.md)
    processes = [subprocess.Popen(
        [dask, "scheduler", "--scheduler-file", root / "scheduler.json", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0"], stdout=open(root / "scheduler.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True, env=env if scheduler_path else bare, cwd=root)]
    try:
        def written() -> bool:
            try:
                return "address" in json.loads((root / "scheduler.json").read_text())
            except (OSError, ValueError):  # not there yet, or half written
                return False

        _wait(written, "dask scheduler", 60, root / "scheduler.log")
        address = json.loads((root / "scheduler.json").read_text())["address"]
        for i in range(workers):
            processes.append(subprocess.Popen(
                [dask, "worker", address, "--nthreads", str(nthreads), "--no-nanny",
                 "--name", f"w{i}"], stdout=open(root / f"w{i}.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=root))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield DaskCluster(address, processes[0], processes[1:])
    finally:
        for process in reversed(processes):
            _stop_group(process)
        shutil.rmtree(root, ignore_errors=True)
