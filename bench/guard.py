"""What every benchmark uses to fail loudly instead of hanging.

A benchmark that waits forever (a server that never starts, a DROP DATABASE behind a lock
its own crashed seeding holds, a socket that never answers) tells nobody anything. Here:
a deadline for the whole run (past it, every thread's stack is printed, the servers it
started are killed and it exits 2), bounded subprocesses, MariaDB sessions that give up on
a lock, and one entry point that turns a failure into a clear message and exit status 1.
"""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import threading
import traceback
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

import pymysql

MARIADB = dict(host="127.0.0.1", port=3306, user="root", password="")
CONNECT_TIMEOUT_SECS = 10
# A statement (seeding 100,000 rows, a deep page) may take long; one that takes longer is stuck.
QUERY_TIMEOUT_SECS = 600
# How long a statement waits for a table or row lock before it fails (DROP DATABASE behind a dead session).
LOCK_WAIT_SECS = 60
SUBPROCESS_TIMEOUT_SECS = 600  # `run.py migrate`, `cp`, `curl` of a few GiB
STOP_TIMEOUT_SECS = 15

_children: list[subprocess.Popen] = []
_databases: list[str] = []  # scratch databases not dropped yet, named when the run is given up


def track(process: subprocess.Popen) -> subprocess.Popen:
    """Remember a child process, so a benchmark that runs out of time kills it on the way out."""
    _children.append(process)
    return process


def stop(process: subprocess.Popen, timeout_secs: float = STOP_TIMEOUT_SECS) -> None:
    """Terminate a child; kill it if it has not exited in time."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_secs)
        except subprocess.TimeoutExpired:
            print(f"pid {process.pid} ignored SIGTERM for {timeout_secs:.0f} s; killing it", file=sys.stderr)
            process.kill()
            process.wait(timeout_secs)
    if process in _children:
        _children.remove(process)


def run(command: list[str], *, timeout_secs: float = SUBPROCESS_TIMEOUT_SECS,
        **kwargs: object) -> subprocess.CompletedProcess:
    """subprocess.run that fails (CalledProcessError, TimeoutExpired) rather than waits forever."""
    return subprocess.run(command, check=True, timeout=timeout_secs, **kwargs)  # type: ignore[call-overload]


def mariadb(database: str | None = None) -> pymysql.connections.Connection:
    """An autocommit session with bounded connect, read, write and lock waits."""
    conn = pymysql.connect(**MARIADB, database=database, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECS,
                           read_timeout=QUERY_TIMEOUT_SECS, write_timeout=QUERY_TIMEOUT_SECS)
    with conn.cursor() as cur:
        cur.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECS}, innodb_lock_wait_timeout = {LOCK_WAIT_SECS}")
    return conn


@contextmanager
def scratch_database(prefix: str = "va_bench") -> Iterator[str]:
    """A new utf8mb4 database, dropped afterwards (within LOCK_WAIT_SECS, or with a message saying it was not)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with mariadb() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    _databases.append(name)
    try:
        yield name
    finally:
        _databases.remove(name)
        try:
            with mariadb() as admin, admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        except pymysql.MySQLError as exc:
            print(f"could not drop the scratch database `{name}` ({exc}); drop it by hand", file=sys.stderr)


def _expire(seconds: float, name: str) -> None:
    print(f"\n{name}: still running after {seconds:.0f} s; giving up. Where every thread was:",
          file=sys.stderr, flush=True)
    faulthandler.dump_traceback(all_threads=True)
    for child in list(_children):
        if child.poll() is None:
            child.kill()
    for name in _databases:
        print(f"left behind: the scratch database `{name}`", file=sys.stderr)
    os._exit(2)


def main(entry: Callable[[], None], *, deadline_secs: float) -> None:
    """Run a benchmark's main: exit 0 when it finishes, 1 with the reason when it fails, 2 when it hangs."""
    name = os.path.basename(sys.argv[0])
    timer = threading.Timer(deadline_secs, _expire, (deadline_secs, name))
    timer.daemon = True
    timer.start()
    try:
        entry()
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a benchmark's failure of any kind: say what it was, exit non-zero
        traceback.print_exc()
        print(f"\n{name} FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        timer.cancel()
        for child in list(_children):
            stop(child)
