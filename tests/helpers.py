"""Helpers shared by the core tests: inline migration trees and the real CLI.

Migration fixtures are written inline, next to the test that uses them (as
yoyo's ``migrations_dir`` does), so each test reads as a complete story.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

# Variables that would make a test depend on the machine it runs on.
_ISOLATE = (
    "DATABASE_URL",
    "VEZAMIG_DIR",
    "VEZAMIG_UP_DIR",
    "VEZAMIG_DOWN_DIR",
    "VEZAMIG_TABLE",
    "PGPASSWORD",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGSERVICE",
    "PGOPTIONS",
)


def write_tree(base: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``{"up/001_a_up.sql": "…"}`` under ``base`` (made if needed); return ``base``.

    ``up/`` and ``down/`` always exist afterwards, so an empty tree is a valid one.
    """
    (base / "up").mkdir(parents=True, exist_ok=True)
    (base / "down").mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
    return base


def cli_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The parent environment without connection/folder settings, plus ``extra``
    (a value of None removes that variable)."""
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATE}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env.pop("FORCE_COLOR", None)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:  # shown by pytest when an assertion fails
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def run_cli(
    args: Iterable[str],
    *,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    prefix: Iterable[str] = (),
) -> CliResult:
    """Run ``python -m vezamig ARGS`` (the real entry point) without a terminal;
    ``prefix``: a command that runs it (UNPRIVILEGED)."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "vezamig", *args],
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


# As root, file modes do not stop a process (CAP_DAC_OVERRIDE): run the CLI without
# that capability to meet an unreadable folder as an ordinary user does.
UNPRIVILEGED: tuple[str, ...] = (
    (
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        "--",
    )
    if os.geteuid() == 0
    else ()
)


def modules_loaded(args: Iterable[str]) -> set[str]:
    """The modules ``python -m vezamig ARGS`` imports (``-X importtime``); the command
    must succeed. Issue 7: what a command does not use, it must not load."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vezamig", *args],
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }


def start_cli(
    args: Iterable[str], *, env: Mapping[str, str | None] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``python -m vezamig ARGS`` in the background (for locks and signals)."""
    return subprocess.Popen(
        [sys.executable, "-m", "vezamig", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
        cwd=cwd,
    )


def run_cli_on_terminal(
    args: Iterable[str],
    answer: str,
    *,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60,
    delay: float = 0,
) -> CliResult:
    """Run the CLI with a pseudo-terminal as stdin/stdout/stderr and type ``answer``.

    The answer is typed once the prompt has appeared (``delay`` seconds later), as a
    person would.
    Output of both streams arrives mixed on the terminal, in ``stdout``.
    """
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vezamig", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env(env),
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal (EIO on Linux)
                    break
                if not chunk:
                    break
                seen += chunk
            if not typed and b"[y/N]" in seen:
                time.sleep(delay)
                os.write(leader, answer.encode() + b"\r")
                typed = True
            if proc.poll() is not None and not ready:
                break
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return CliResult(returncode, seen.decode(errors="replace"), "")


# ---- database state -----------------------------------------------------------------


@contextmanager
def held_elsewhere(dsn: str, statement: str) -> Iterator[None]:
    """Another session runs ``statement`` (``BEGIN; LOCK TABLE …``) and keeps what it
    took while the block runs."""
    holder = psycopg.connect(dsn, autocommit=True)
    try:
        holder.execute(statement)
        yield
    finally:
        holder.close()


def query(dsn: str, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one query on a fresh autocommit connection (sees committed state only)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(text, params)
        return cur.fetchall() if cur.description is not None else []


def execute(dsn: str, text: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text)


def table_exists(dsn: str, name: str) -> bool:
    """``name`` is ``table`` or ``schema.table``, each part taken literally (quoted)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        quoted = sql.Identifier(*name.split(".")).as_string(conn)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (quoted,)).fetchone()
    return row is not None and row[0] is True


def applied_versions(dsn: str, table: str = "schema_migrations") -> list[int]:
    if not table_exists(dsn, table):
        return []
    ident = sql.Identifier(*table.split("."))
    stmt = sql.SQL("SELECT version FROM {} ORDER BY version").format(ident)
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(stmt).fetchall()]


def history(dsn: str, table: str = "schema_migrations_history") -> list[dict[str, Any]]:
    """History rows, oldest first, as dicts keyed by column name."""
    if not table_exists(dsn, table):
        return []
    ident = sql.Identifier(*table.split("."))
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(ident))
        assert cur.description is not None
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def user_tables(dsn: str) -> list[str]:
    """Every ordinary table outside the system schemas, as schema.table, sorted."""
    rows = query(
        dsn,
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
    )
    return [r[0] for r in rows]


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 30, what: str = "condition"
) -> None:
    """Poll until ``condition()`` holds; fail (not flake) only after a generous timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def backends_running(dsn: str, needle: str) -> list[int]:
    """Pids of other backends whose current query contains ``needle``."""
    rows = query(
        dsn,
        "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        " AND datname = current_database() AND state = 'active'"
        " AND position(%s in query) > 0",
        (needle,),
    )
    return [r[0] for r in rows]


def migrate(dsn: str, tree: Path, to: int | None = None, table: str = "schema_migrations") -> None:
    """Apply pending versions in-process, for a test's setup (the CLI is what is tested)."""
    from vezamig.config import Config, parse_table
    from vezamig.db import connect
    from vezamig.files import discover
    from vezamig.runner import Runner

    cfg = Config(conninfo=dsn, table=parse_table(table), up_dir=tree / "up", down_dir=tree / "down")
    conn = connect(dsn)
    try:
        runner = Runner(conn, cfg, discover(cfg.up_dir, cfg.down_dir, check_directives=True))
        with runner.run_lock():
            runner.execute(runner.plan("up", to))
    finally:
        conn.close()
