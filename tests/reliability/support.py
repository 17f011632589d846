"""Helpers for the reliability suite: migration trees, the real CLI, the database's state.

Faults are inflicted on real processes and a real server, so everything here
talks to PostgreSQL directly; nothing is mocked. Waiting is always "poll until
the database says so, fail after a generous limit", never a fixed sleep.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from helpers import _ISOLATE
from helpers import CliResult as Result
from helpers import cli_env as base_cli_env
from helpers import write_tree as write_tree  # re-exported for the suite
from psycopg import sql

# A step that sleeps only while the test says so: the same file applies quickly
# on the re-run once the test has set the switch to 0 seconds.
SLEEP_SQL = "SELECT pg_sleep(seconds) FROM fault_switch;\n"


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The suite-wide isolated environment, unbuffered so output arrives as it is written."""
    return base_cli_env({"PYTHONUNBUFFERED": "1", **(extra or {})})


def run_cli(args: Iterable[str], *, timeout: float = 120) -> Result:
    """``python -m vezamig ARGS``, the real entry point, without a terminal."""
    proc = subprocess.run(
        [sys.executable, "-m", "vezamig", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Running:
    """A vezamig process in the background whose output is collected as it arrives."""

    proc: subprocess.Popen[str]
    _out: list[str] = field(default_factory=list)
    _err: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output_so_far(self) -> str:
        return "".join(self._out) + "".join(self._err)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> Result:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(timeout=10)
        return Result(code, "".join(self._out), "".join(self._err))


def start_cli(args: Iterable[str]) -> Running:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vezamig", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    running = Running(proc)
    for stream, sink in ((proc.stdout, running._out), (proc.stderr, running._err)):
        assert stream is not None

        def pump(stream: Any = stream, sink: list[str] = sink) -> None:
            with stream:
                for line in stream:
                    sink.append(line)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        running._threads.append(t)
    return running


# ---- the database's state ----------------------------------------------------------


def query(dsn: str, text: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement on a fresh autocommit connection (committed state only)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(text, params)
        return cur.fetchall() if cur.description is not None else []


def execute(dsn: str, text: str | sql.Composable, params: Any = None) -> None:
    query(dsn, text, params)


def regclass_exists(dsn: str, name: str) -> bool:
    return bool(query(dsn, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0])


def table_exists(dsn: str, *parts: str) -> bool:
    """Whether the table with exactly these (unquoted) name parts exists."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        quoted = sql.Identifier(*parts).as_string(conn)
    return regclass_exists(dsn, quoted)


def recorded(dsn: str, table: tuple[str, ...] = ("schema_migrations",)) -> list[tuple[int, bool]]:
    """(version, dirty) of every row of the tracking table, ascending; [] when absent."""
    if not table_exists(dsn, *table):
        return []
    return [
        (int(v), bool(d))
        for v, d in query(
            dsn,
            sql.SQL("SELECT version, dirty FROM {} ORDER BY version").format(
                sql.Identifier(*table)
            ),
        )
    ]


def versions(dsn: str, table: tuple[str, ...] = ("schema_migrations",)) -> list[int]:
    return [v for v, _ in recorded(dsn, table)]


def history(
    dsn: str, table: tuple[str, ...] = ("schema_migrations_history",)
) -> list[dict[str, Any]]:
    """History rows oldest first, as dicts."""
    if not table_exists(dsn, *table):
        return []
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(*table)))
        assert cur.description is not None
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def wait_for(condition: Callable[[], bool], *, timeout: float = 30, what: str) -> None:
    """Poll until ``condition()`` holds; fail only after a generous limit."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def backends(dsn: str, needle: str) -> list[tuple[int, str, str | None]]:
    """(pid, state, wait_event_type) of other sessions of this database whose query has needle."""
    return [
        (int(p), s, w)
        for p, s, w in query(
            dsn,
            "SELECT pid, state, wait_event_type FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname = current_database()"
            " AND position(%s in query) > 0",
            (needle,),
        )
    ]


def active_backends(dsn: str, needle: str) -> list[int]:
    return [p for p, s, _ in backends(dsn, needle) if s == "active"]


def set_sleep(dsn: str, seconds: float) -> None:
    """Create or set the switch that SLEEP_SQL reads."""
    execute(dsn, "CREATE TABLE IF NOT EXISTS fault_switch (seconds float8 NOT NULL)")
    execute(dsn, "DELETE FROM fault_switch")
    execute(dsn, "INSERT INTO fault_switch VALUES (%s)", (seconds,))


# ---- the CLI in-process, for fuzzing speed -------------------------------------------


def invoke(args: list[str]) -> Result:
    """Run the CLI in this process; fail the test if anything but SystemExit escaped."""
    from click.testing import CliRunner

    from vezamig.cli import cli

    env: dict[str, str | None] = {k: None for k in _ISOLATE}
    env.update({"NO_COLOR": "1", "COLUMNS": "200"})
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"vezamig {args} raised instead of exiting cleanly:\n{trace}")
    return Result(result.exit_code, result.stdout, result.stderr)


@contextmanager
def run_lock_held(dsn: str) -> Iterator[None]:
    """Hold vezamig's run lock exactly as another vezamig run would."""
    from vezamig.db import acquire_run_lock, release_run_lock

    with psycopg.connect(dsn, autocommit=True) as conn:
        lock = acquire_run_lock(conn, 0)
        try:
            yield
        finally:
            release_run_lock(conn, lock)
