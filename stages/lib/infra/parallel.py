"""Run several members of one stage as their own processes, over the machine's cores.

DVC runs the stages of a `dvc repro` one at a time, and one Keras model this
small keeps one core busy. So a stage whose members are independent (the
memory models, a dataset's forecasters) starts each member as the command it
would be alone (``python -m stages.<stage> --model lstm ...``), as many at once
as there are cores, in the order the stage gives. Each member is the same
process, with the same seed, data and MLflow run, as when it ran in a stage of
its own: its outputs are byte-identical, only the wall time shrinks
(docs/speed.md).

Every line a member prints reaches the stage's log prefixed with its label,
stdout to stdout and stderr to stderr. When a member fails, the others are
stopped (SIGTERM: their MLflow runs end KILLED), the outputs of those that
finished are discarded with the rest, and the stage fails with one line naming
the member and its error; Ctrl-C or SIGTERM on the stage stops them all. A
member killed by a signal (one still running a minute after its SIGTERM, or
one that native code aborted) could not end its MLflow run: the stage tries to
end it for it (FAILED, or KILLED when the stage stopped it), found by a tag it
gave the member, rather than leave it RUNNING in the MLflow UI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from stages.lib.errors import CommandError
from stages.lib.infra import interrupts, tracking
from stages.lib.infra.cores import ENV, cores

POLL_S = 0.05
KILL_AFTER_S = 60.0  # a member still running this long after its SIGTERM is killed
JOIN_S = 5.0
# A member's exit after SIGINT or SIGTERM: cli.run's 130, or the signal itself.
INTERRUPTED = {130, 143, -signal.SIGINT, -signal.SIGTERM}


@dataclass
class Member:
    """One member's command (argv after ``python``), and the label its lines are prefixed with."""

    label: str
    args: list[str]
    errors: list[str] = field(default_factory=list)


@dataclass
class Running:
    """A started member: its process and the threads that copy its output."""

    member: Member
    proc: subprocess.Popen
    pumps: list[threading.Thread]
    run_tag: str  # the tag of its MLflow run (tracking.MEMBER_TAG)


def prefixed(line: str, label: str) -> str:
    """A member's line in the stage's log: as it is where the member already names itself."""
    return line if line.startswith(f"{label}:") else f"{label}: {line}"


def _pump(stream: IO[str], out: IO[str], member: Member, lock: threading.Lock, keep_errors: bool) -> None:
    """Copy a member's lines to the stage's stream, prefixed, until the member closes its end.

    It reads to the end whatever happens to the writes: a pipe left unread
    would block the member once its buffer filled, and the stage would wait on it.
    """
    with stream:
        for line in stream:
            line = line.rstrip("\n")
            if keep_errors and line.startswith("error: "):
                # The stage says it once, naming the member: "error: <member>: <reason>".
                member.errors.append(line.removeprefix("error: "))
                continue
            try:
                with lock:
                    print(prefixed(line, member.label), file=out, flush=True)
            except (OSError, ValueError):  # the stage's own output is gone (a closed pipe): keep draining
                pass


def member_env(share: int) -> dict[str, str]:
    """A member's environment: its share of the cores for its own worker pools, and for the thread pools
    that only schedule work (a user's own setting wins). Measured on the 2-core machine: El Nino's ARIMA
    backtest took 55 s beside the Keras ones with OpenBLAS' default two threads, which spin while they wait
    (alone: 24 s, using 45 s of CPU), and 23 s alone with one, byte-identical. TensorFlow's inter-op pool of
    1 gives the same weights with less spinning. Its intra-op pool stays as it is: its size changes how
    sums are split, and with it a TCN's weights in the last digits."""
    return {**{name: str(share) for name in ("OPENBLAS_NUM_THREADS", "TF_NUM_INTEROP_THREADS")},
            **os.environ, "PYTHONUNBUFFERED": "1", ENV: str(share)}


def _start(member: Member, lock: threading.Lock, share: int) -> Running:
    run_tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, *member.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", bufsize=1,
                            env={**member_env(share), tracking.MEMBER_ENV: run_tag})
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, sys.stdout, member, lock, False), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, sys.stderr, member, lock, True), daemon=True)]
    for pump in pumps:
        pump.start()
    return Running(member=member, proc=proc, pumps=pumps, run_tag=run_tag)


def _end_if_orphaned(r: Running, status: str) -> None:
    """After a member's exit: a member killed by a signal ran no cleanup, so its MLflow run is ended here.
    Best effort: a store that fails now does not hide why the stage stopped."""
    code = r.proc.returncode
    if code is None or code >= 0:
        return
    try:
        if tracking.end_orphaned(r.run_tag, status):
            print(f"{r.member.label}: {exit_reason(code)}, its MLflow run was left RUNNING: ended as {status}",
                  file=sys.stderr, flush=True)
    except Exception as exc:  # reported; the stage's own error then goes on
        print(f"{r.member.label}: {exit_reason(code)}; its MLflow run could not be ended "
              f"({tracking.first_line(exc)})", file=sys.stderr, flush=True)


def _stop(running: list[Running], grace_s: float = 0.0) -> None:
    """SIGTERM every running member and wait for it: each ends its MLflow run and removes its temporary output.

    ``grace_s``: first wait that long for members that got the signal themselves
    (Ctrl-C reaches the whole process group); a member ignores a second signal
    while it stops (stages/lib/infra/interrupts.py). One that has not ended
    ``KILL_AFTER_S`` later is killed.
    """
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(r.proc.poll() is None for r in running):
        time.sleep(POLL_S)
    for r in running:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
    for r in running:
        try:
            r.proc.wait(timeout=KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            r.proc.kill()
            r.proc.wait()
        _join(r.pumps)
        _end_if_orphaned(r, "KILLED")


def _join(pumps: list[threading.Thread]) -> None:
    # A worker the member started and left behind may hold its pipe open: do not wait on it for ever.
    for pump in pumps:
        pump.join(timeout=JOIN_S)


def exit_reason(code: int) -> str:
    """What a member's exit status says, for the stage's error line."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:  # a real-time signal has no name
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def run_members(members: Sequence[Member], jobs: int | None = None) -> None:
    """Run every member, ``jobs`` at a time (default: the cores), in the given order.

    Returns when all succeeded. Otherwise raises CommandError naming the first
    member that failed and its error line (the rest are stopped), or
    KeyboardInterrupt when the stage itself was interrupted.
    """
    tracking.preflight()  # an unreachable server fails the stage once, before any member starts
    available = cores()
    jobs = max(1, min(jobs or available, len(members)))
    share = max(1, available // jobs)  # each member's worker pools stay on its share of the cores
    queue = list(members)
    running: list[Running] = []
    lock = threading.Lock()
    try:
        while queue or running:
            interrupts.check()
            while queue and len(running) < jobs:
                running.append(_start(queue.pop(0), lock, share))  # registered at once: an interrupt stops it too
            for done in [r for r in running if r.proc.poll() is not None]:
                _join(done.pumps)
                running.remove(done)
                code, member = done.proc.returncode, done.member
                _end_if_orphaned(done, "KILLED" if code in INTERRUPTED else "FAILED")
                if code in INTERRUPTED:  # the member got the stage's Ctrl-C first
                    raise KeyboardInterrupt(f"{member.label} interrupted")
                if code != 0:
                    _stop(running)
                    running.clear()
                    reason = member.errors[-1] if member.errors else exit_reason(code)
                    raise CommandError(f"{member.label}: {reason}")
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _stop(running, grace_s=2.0)
        raise
