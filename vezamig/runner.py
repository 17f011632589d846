"""Run steps: one transaction each (SPEC §3), or statement by statement (§6).

The runner returns data and calls an optional reporter; it never prints.
Every outcome, including refusals and failures, is appended to the history
after the step's rollback, so the audit log tells the truth even when the run
does not finish.
"""

from __future__ import annotations

import functools
import re
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.pq import ExecStatus
from psycopg.pq.abc import PGresult

from vezamig.config import Config, os_text
from vezamig.db import (
    NO_SOCKET_POLLING,
    Connection,
    RunLock,
    acquire_run_lock,
    error_lines,
    hold_probe_lock,
    release_run_lock,
    run_lock_held_sql,
    session_setup,
)
from vezamig.errors import (
    ConnectError,
    GuardRefused,
    Interrupted,
    LayoutError,
    LockBusy,
    OutputLost,
    Refused,
    StepFailed,
    UsageError,
    VezamigError,
)
from vezamig.files import Migration
from vezamig.plan import Plan, StatusRow, Step, plan_down, plan_up, status_rows
from vezamig.state import (
    TRANSACTION_START,
    AppliedRow,
    Tracker,
    grant_hint,
    skipped_bookkeeping,
)

if TYPE_CHECKING:
    from vezamig.directives import Guard
    from vezamig.sqltext import Statement

_BACKOFF_BASE_S = 1.0
_BACKOFF_MAX_S = 30.0
# Transaction control that would end the step's transaction before its bookkeeping
# (savepoints are fine: they stay inside it).
_GUARD_OPEN = "SAVEPOINT vezamig_guard; SET LOCAL transaction_read_only = on"
_GUARD_CLOSE = "ROLLBACK TO SAVEPOINT vezamig_guard; RELEASE SAVEPOINT vezamig_guard"
_GUARD_UNDO = "ROLLBACK TO SAVEPOINT vezamig_guard"  # repeated by _GUARD_CLOSE: harmless
# duplicate_schema, _table, _object (a type), _function, _column, _database
_ALREADY_EXISTS = frozenset({"42P06", "42P07", "42710", "42723", "42701", "42P04"})

# The step's duration, measured by the server up to the bookkeeping statement: the
# start of the step's last message (statement_timestamp) to now (clock_timestamp).
_SERVER_MS = sql.SQL(
    "(extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp())"
    " * 1000)::int"
)


def _server_time_at(t0: float) -> sql.Composable:
    """The moment of ``time.monotonic()`` value ``t0``, on the server's clock: every
    history row's started_at comes from the clock of the tracking rows' applied_at,
    so ids and times agree whatever the client's clock says (SPEC §4)."""
    return sql.SQL("pg_catalog.clock_timestamp() - {} * interval '1 millisecond'").format(
        sql.Literal(_ms_since(t0))
    )


# After each step: the next one starts from the session's defaults, without the temp
# tables, prepared statements, WITH HOLD cursors or LISTENs a migration left (a later
# step would write into a temp table that shadows its real one, a roundtrip's up
# again would find them there). Not DISCARD ALL: it would release the run lock.
_SESSION_RESET = (
    "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; DISCARD TEMP; DEALLOCATE ALL; CLOSE ALL;"
    " UNLISTEN *"
)
# Before the bookkeeping, inside its transaction: a body's SET ROLE or SET SESSION
# AUTHORIZATION (to create objects owned by another role) must not decide who writes
# the tracking rows. LOCAL: a non-transactional step's own statements keep the role
# they set. DEFAULT is the user who connected, which any user may switch back to.
_AS_SESSION_USER = "SET LOCAL SESSION AUTHORIZATION DEFAULT"
# And a body's `SET LOCAL synchronous_commit = off` (a bulk backfill's trick) must not
# make the step's COMMIT asynchronous: a server crash could then undo a version
# reported applied (other values, `local` to `remote_apply`, are kept).
_DURABLE_COMMIT = (
    "SELECT pg_catalog.set_config('synchronous_commit', 'on', true)"
    " WHERE pg_catalog.current_setting('synchronous_commit') = 'off'"
)
_BEFORE_BOOKKEEPING = f"{_AS_SESSION_USER}; {_DURABLE_COMMIT}"


class Reporter(Protocol):
    def step_started(self, step: Step) -> None: ...
    def step_finished(self, result: StepResult) -> None: ...
    def info(self, message: str) -> None: ...


def _progress(path: object, statements: Sequence[Statement], ran: int) -> str:
    """A no-transaction step's history message while it runs: what a killed run leaves
    behind, naming the statement that was running (or about to) when it stopped."""
    total = len(statements)
    said = f"{ran} of {total} statements ran"
    if ran:
        said += f" (last: {path}:{statements[ran - 1].line})"
    if ran == total:
        return said + "; the run stopped before the step was recorded finished"
    nxt = statements[ran]
    said += (
        f"; the run stopped while statement {ran + 1} ({path}:{nxt.line}) ran or was about "
        "to: it may have done part of its work"
    )
    hint = _unfinished_hint(_concurrent_index(nxt))
    return f"{said} ({hint})" if hint else said


def _statement_list(path: object, statements: Sequence[Statement]) -> str:
    """Consecutive statements by file:line; a long run of them by its count and ends
    (a 20,000-statement file must not make a 500 KB message and history row)."""
    if not statements:
        return "none"
    if len(statements) <= 10:
        return ", ".join(f"{path}:{s.line}" for s in statements)
    first, last = statements[0], statements[-1]
    return f"{len(statements)} statements, {path}:{first.line} to {path}:{last.line}"


def _waits_for_others(statement: Statement) -> bool:
    """A CONCURRENTLY statement, which waits for older transactions by design."""
    return re.search(r"\bconcurrently\b", statement.text, re.I) is not None


def _concurrent_index(statement: Statement) -> tuple[str, str | None, str, str] | None:
    """("create", its written name or None when unnamed, its bare name, its table as
    written) for a CREATE INDEX CONCURRENTLY, ("drop", its written name, its bare name,
    "") for a DROP INDEX CONCURRENTLY, ("reindex", None, "", "") for a REINDEX
    CONCURRENTLY, else None."""
    from pglast import ast, enums, parse_sql
    from pglast.parser import ParseError

    from vezamig.sqltext import written_name

    try:
        (raw,) = parse_sql(statement.text)
    except (ParseError, ValueError):
        return None
    node = raw.stmt
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        rel = node.relation
        schema = rel.schemaname if rel is not None else None
        table = ".".join(written_name(p) for p in (schema, rel.relname if rel else None) if p)
        if not node.idxname:
            return "create", None, "", table
        written = ".".join(written_name(p) for p in (schema, node.idxname) if p)
        return "create", written, node.idxname, table
    if (
        isinstance(node, ast.DropStmt)
        and node.concurrent
        and node.removeType == enums.ObjectType.OBJECT_INDEX
        and len(objects := node.objects or ()) == 1  # one index, concurrently
    ):
        parts = [p.sval for p in objects[0]]
        return "drop", ".".join(written_name(p) for p in parts), parts[-1], ""
    if isinstance(node, ast.ReindexStmt) and any(
        isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in node.params or ()
    ):
        return "reindex", None, "", ""
    return None


_FIND_INVALID = "SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid"


def _unfinished_hint(
    found: tuple[str, str | None, str, str] | None, *, left_invalid: str | None = None
) -> str | None:
    """What a CONCURRENTLY statement that did not finish leaves behind, and what to do.
    Unless the catalog was read (``left_invalid``: the index's name with the schema
    of its table, where CREATE INDEX put it), the named index is only to be
    dropped if it is INVALID: one of that name may be a valid index that was there
    before (the statement then failed with "already exists"). ``found``: what
    _concurrent_index read of the statement."""
    if found is None:
        return None
    kind, name, _, table = found
    if kind == "drop":
        again = f"DROP INDEX CONCURRENTLY IF EXISTS {left_invalid or name}"
        left = (
            "a DROP INDEX CONCURRENTLY that did not finish can leave its index behind "
            "INVALID (no query uses it, every write still updates it)"
        )
        if left_invalid:
            return f"{left}: {left_invalid} is INVALID now; run {again} again before you repair"
        return f"{left}: if {name} is still there, run {again} again before you repair"
    if kind == "reindex":
        return (
            "a REINDEX CONCURRENTLY that did not finish leaves INVALID indexes named *_ccnew "
            f"behind: drop them ({_FIND_INVALID}) before you repair"
        )
    left = (
        "a CREATE INDEX CONCURRENTLY that did not finish leaves an INVALID index behind, "
        "which enforces nothing and is not replaced by a new run"
    )
    if name is None:
        return f"{left}: find it ({_FIND_INVALID}) and drop it before you repair"
    if left_invalid:
        drop = f"DROP INDEX CONCURRENTLY IF EXISTS {left_invalid}"
        return f"{left}: {left_invalid} is INVALID now; drop it ({drop}) before you repair"
    drop = f"DROP INDEX CONCURRENTLY IF EXISTS {name}"
    quoted = table.replace("'", "''")
    check = (
        "SELECT indexrelid::regclass, indisvalid FROM pg_index WHERE indrelid = "
        f"'{quoted}'::regclass"
    )
    return (
        f"{left}: if {name} (in the schema of table {table}) is INVALID ({check}, with the "
        f"file's search_path), drop it ({drop}, schema-qualified) before you repair"
    )


class _Stop(Exception):
    """A stop signal came (see Runner._signals_cancel): the step stops where it is."""


@dataclass
class _NoTxRun:
    """A non-transactional step once its version is marked dirty: how far it got, for
    the progress records and for the message if it stops part-way."""

    step: Step
    statements: list[Statement]
    hist_id: int  # its history row, updated statement by statement
    t0: float
    done: list[Statement] = field(default_factory=list)
    attempts: int = 1  # of the statement running (or of the end record)
    retries: int = 0  # lock-timeout retries of the whole step, said as a step's are

    def retried(self) -> str:
        return _retried(self.retries)


def _retried(n: int) -> str:
    """What a step's result line and history row say of its lock-timeout retries."""
    return f"after {n} lock-timeout {'retry' if n == 1 else 'retries'}" if n else ""


def stop_code(stop: KeyboardInterrupt | SystemExit) -> int:
    """The exit code of a stop: 130 for Ctrl-C, 128 + N for a signal raised as exit."""
    return stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 130


class NullReporter:
    def step_started(self, step: Step) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass

    def info(self, message: str) -> None:
        pass


class _SteadyReporter:
    """A reporter whose failure (stdout on a full disk, its reader gone) cannot break a
    step half-way: the first failure is kept and nothing more is written; the run
    stops at the next step boundary (Runner._stop_if_output_lost)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.lost: OutputLost | None = None

    def _call(self, write: Callable[[Any], None], arg: Any) -> None:
        if self.lost is not None:
            return
        try:
            write(arg)
        except OutputLost as exc:
            self.lost = exc
        except OSError as exc:
            self.lost = OutputLost(exc, "the output")

    def step_started(self, step: Step) -> None:
        self._call(self.inner.step_started, step)

    def step_finished(self, result: StepResult) -> None:
        self._call(self.inner.step_finished, result)

    def info(self, message: str) -> None:
        self._call(self.inner.info, message)


@dataclass(frozen=True)
class GuardResult:
    guard: Guard
    passed: bool
    returned: str  # what the query returned, in words
    # A dry run's guard that hit the lock timeout: no verdict (the real run would
    # wait and retry, then exit 4), so neither a pass nor a refusal.
    blocked: bool = False
    released: bool = False  # it released the session's run lock (or a dry run's probe)

    def __str__(self) -> str:
        verdict = "BLOCKED" if self.blocked else "pass" if self.passed else "REFUSE"
        return f"{verdict}: {self.guard.query} → {self.returned}"


@dataclass(frozen=True)
class StepResult:
    version: int
    name: str
    direction: str
    outcome: str  # ok | failed | refused
    duration_ms: int
    message: str = ""

    def __str__(self) -> str:
        return (
            f"{self.direction} {self.version} {self.name}: {self.outcome} ({self.duration_ms} ms)"
        )


@dataclass
class RunResult:
    plan: Plan
    results: list[StepResult] = field(default_factory=list)
    guard_results: dict[tuple[int, str], list[GuardResult]] = field(default_factory=dict)
    unfinished: Step | None = None  # the step that was running when the run stopped
    elapsed_ms: int = 0  # the whole run, lock-timeout pauses included


# What LOCK TABLE takes (tables, partitioned tables, views, foreign tables), and the
# words for what it refuses.
_LOCKABLE = frozenset({"r", "p", "v", "f"})
_RELKIND_WORDS = {
    "S": "a sequence",
    "i": "an index",
    "I": "an index",
    "m": "a materialized view",
    "c": "a composite type",
    "t": "a TOAST table",
}


def retry_pause(attempt: int) -> float:
    """Seconds to wait after lock-timeout attempt ``attempt`` (1, 2, 4, … up to 30)."""
    return float(min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempt - 1)))


def _versions(versions: list[tuple[int, str]]) -> str:
    """``3 (c), 2 (b)``; a long run's list by its count and ends."""
    if len(versions) <= 5:
        return ", ".join(f"{v} ({name})" for v, name in versions)
    return f"{len(versions)} versions, {versions[0][0]} … {versions[-1][0]}"


def _ms_since(t0: float) -> int:
    return round((time.monotonic() - t0) * 1000)


_NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "numeric", "float4", "float8", "oid"})
_BOOL_OID = 16
_SHOWN_VALUE = 160


@functools.lru_cache(maxsize=64)
def _two_rows_at_most(query: str) -> str:
    """The guard as a subquery that returns two rows at most: two decide "several rows"
    as well as all of them, and a guard that forgot its aggregate (`SELECT x = 'local'
    FROM tracks`) must not fetch the whole table into vezamig while the step holds its
    locks. The parser's split drops a trailing `;` and comment; the newlines keep a
    comment inside it from reaching the `)`. pg_stat_activity still shows the guard."""
    from vezamig.sqltext import split_statements

    (statement,) = split_statements(query)  # one SELECT: checked when the file was read
    return f"SELECT * FROM (\n{statement.text}\n) AS vezamig_guard LIMIT 2"


def describe_result(rows: int, columns: int, first: str | None, type_name: str | None) -> str:
    """What a guard returned, in words: ``first`` is the first value in PostgreSQL's own
    text form (`2026-12-01 19:43:18+00`, `{t}`, not a Python repr: the operator wrote
    SQL), ``type_name`` pg_type's name for its type (`int4`, not Python's `int`)."""
    if not rows:
        return "no row"
    if rows > 1:
        return f"{rows} rows or more"  # a guard's rows are fetched two at most
    if not columns:
        return "a row with no column"
    if first is None:
        return "NULL"
    kind = type_name or "unknown"
    if len(first) > _SHOWN_VALUE:  # a 2 MB text must not become a 2 MB message and row
        first = f"{first[:_SHOWN_VALUE]}… ({len(first)} characters)"
    if kind == "bool":
        return "true" if first == "t" else "false"
    shown = first if kind in _NUMERIC_TYPES else "'" + first.replace("'", "''") + "'"
    return f"{shown} ({'an' if kind[:1] in 'aeiou' else 'a'} {kind}, not a boolean)"


def _lock_position(step: Step, message: str) -> tuple[int, int]:
    """Line and column of the `vezamig:lock` table a LOCK failed on: PostgreSQL names it
    in quotes (`relation "tracks" does not exist`); else the first lock directive."""
    from vezamig.sqltext import line_col

    locks = step.directives.locks
    named = message.partition('"')[2].rpartition('"')[0]  # may hold a quote itself
    text = step.file.text
    for lock in locks:
        for table in lock.tables:
            if named not in (table[-1], ".".join(table)):
                continue
            # The directive's comment starts on its line, and may go on (a block comment).
            begin = 0
            for _ in range(lock.line - 1):
                begin = text.find("\n", begin) + 1
            at = text.find("vezamig:lock", begin)
            region = text[at : at + 4096] if at >= 0 else ""
            for pattern in (r"\s*\.\s*".join(_written(p) for p in table), _written(table[-1])):
                m = re.search(pattern, region, re.I)
                if m:
                    pos = line_col(text, at + m.start())
                    return pos.line, pos.column
            return lock.line, 1
    return locks[0].line, 1


def _written(part: str) -> str:
    """A regular expression for one name part as it may be written: quoted, or bare."""
    quoted = '"' + re.escape(part.replace('"', '""')) + '"'
    return f'(?:{quoted}|(?<![\\w$"]){re.escape(part)}(?![\\w$"]))'


def _lost_session(exc: psycopg.Error) -> bool:
    """The session ended under the query (terminated, server shut down, connection
    broken): class 08 or 57P, or an operational error with no SQLSTATE (libpq's own)."""
    state = exc.diag.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith(("08", "57P"))


def body_problems(step: Step, tracking: tuple[str, str], schema: str | None) -> list[str]:
    """Statements this step cannot run (runnable.run_problems), or that would change
    the tracking tables ``tracking`` (runnable.own_table_problems), checked before
    anything runs."""
    from vezamig.runnable import own_table_problems, run_problems, split_problems

    f = step.file
    unlexed = f.body_lexer_problems()  # the lexing the directive check left to the run
    if unlexed:
        return unlexed
    no_tx = step.directives.no_transaction
    problems = run_problems(f.text, str(f.path), no_transaction=no_tx)
    problems = problems or (split_problems(f.text, str(f.path)) if no_tx else [])
    return problems + own_table_problems(f.text, str(f.path), tracking, schema)


class _CountingCursor(psycopg.Cursor[Any]):
    """Notes how many statements of a multi-statement message completed before an error.

    psycopg raises on the failing result without saying which one it was; the
    index names the failing statement when PostgreSQL reports no position. If a
    psycopg release renames the hook, ``completed`` stays None: the error is
    still reported, only without its statement.
    """

    completed: int | None = None

    def _check_results(self, results: list[PGresult]) -> None:
        self.completed = next(
            (i for i, r in enumerate(results) if r.status == ExecStatus.FATAL_ERROR), None
        )
        super()._check_results(results)


class Runner:
    """One run against one database: status, plan, execute."""

    def __init__(
        self,
        conn: Connection,
        config: Config,
        migrations: list[Migration],
        reporter: Reporter | None = None,
        *,
        session_setup: bool = False,
        read_only: bool = False,
    ) -> None:
        """``session_setup``: the connection still needs db.session_setup; run_lock sends
        it in the same message as its first lock attempt (one round trip for both).
        ``read_only``: a command that runs no step (status, history) need not pin the
        tracking table's schema (Tracker)."""
        self.conn = conn
        self._setup_pending = session_setup
        self.config = config
        self.migrations = migrations
        self.reporter = _SteadyReporter(reporter or NullReporter())
        self.tracker = Tracker(conn, config, resolve_schema=not read_only)
        self._begin: str | None = None
        self._polls: bool | None = None  # see _reset_sql
        self._lock_held: str | None = None  # while run_lock holds the lock: see _guard_query
        self._forced_sync: bool | None = None
        self._read_only: str | None = None  # see check_writable
        self._recorded_any = True  # whether plan() found any version recorded (_adopt_hint)
        self._signal: int | None = None  # a stop signal that arrived while steps ran
        self._guard_at: Guard | None = None  # the guard running (for messages)
        # Set by a step that ended well but must end the run (a stop signal came while
        # it committed, or its connection was lost after COMMIT): raised once it is
        # reported.
        self._stop_after: VezamigError | None = None
        self._pid = conn.info.backend_pid  # to tell, after a lost connection, if it ended
        self._sent = ""  # the step's last message (its start shows in pg_stat_activity)

    # ---- reading -------------------------------------------------------------

    def applied(self) -> dict[int, AppliedRow]:
        return self.tracker.applied()

    def status(self) -> list[StatusRow]:
        return status_rows(self.migrations, self.applied())

    def duplicates(self) -> list[str]:
        """Versions recorded more than once, as found by the last ``applied()`` read."""
        table = self.tracker.table.as_string(self.conn)
        return [
            f"version {v} ({name}) is recorded {n} times in {self.config.table_label}, "
            "which vezamig never does (was it edited by hand?); delete the extra row(s), "
            f"then restore the key: ALTER TABLE {table} ADD PRIMARY KEY (version)"
            for v, (name, n) in sorted(self.tracker.duplicated.items())
        ]

    @contextmanager
    def run_lock(self, *, release: bool = True) -> Iterator[None]:
        """``release=False`` when the connection closes right after: the session's end
        frees the lock, and the unlock would be one more round trip."""
        lock = acquire_run_lock(
            self.conn,
            self.config.lock_wait_ms,
            self.reporter.info,
            setup=self._setup_pending,
            statement_timeout_ms=self.config.statement_timeout_ms,
        )
        self._setup_pending = False
        self._lock_held = run_lock_held_sql(self.conn, lock)
        self._polls = lock.polls
        self._forced_sync = lock.forced_sync
        self._read_only = lock.read_only
        try:
            yield
        finally:
            self._lock_held = None
            if release and not self.conn.closed:
                # On failure the session ends right after; the server frees the lock anyway.
                with suppress(psycopg.Error):
                    release_run_lock(self.conn, lock)

    def check_writable(self) -> None:
        """Before the first write of a run: a session that cannot write (a hot standby,
        or default_transaction_read_only set for the role or database) is a wrong
        target, said plainly (exit 2), not a first step or row failing with 25006.
        vezamig does not switch the read-only default off: someone set it to say no."""
        if self._read_only is None:
            return
        if self._read_only == "recovery":
            why = "the server is a hot standby (in recovery): it accepts no writes"
            fix = "connect to the primary"
        else:
            why = "default_transaction_read_only is on for this session"
            fix = (
                "connect to a database that accepts writes; if this one should, turn the "
                "setting off where it was set (ALTER ROLE/DATABASE … RESET "
                "default_transaction_read_only), or for this run only: "
                "PGOPTIONS='-c default_transaction_read_only=off'"
            )
        raise UsageError(
            f"{self.config.application} refused: {why}; nothing was changed", details=[fix]
        )

    def plan(self, direction: str, to: int | None, allow_out_of_order: bool = False) -> Plan:
        if self.conn.info.parameter_status("standard_conforming_strings") == "off":
            # Reported by the server at connect: no round trip.
            raise UsageError(
                f"{direction} refused: the server has standard_conforming_strings = off; "
                "vezamig reads migration files as PostgreSQL does with it on (the default "
                "since 9.1), so a backslash in a '…' string could hide a COMMIT from its "
                "checks; nothing was changed",
                details=[
                    "turn it on (ALTER DATABASE … SET standard_conforming_strings = on), "
                    "after checking that no migration relies on backslash escapes in '…' "
                    "strings (write those as E'…')"
                ],
            )
        rows = self.status()
        self._recorded_any = any(r.applied is not None for r in rows)
        plan = (
            plan_up(rows, to, allow_out_of_order, self.config.command)
            if direction == "up"
            else plan_down(rows, to, self.config.command)
        )
        plan.refusals.extend(self.duplicates())
        # The down files of the versions this run touches: read now if not yet (an up
        # checks the rollback of what it applies before applying it).
        problems = [p for step in plan.steps for p in step.migration.down_problems()]
        if problems:
            # Failing anyway: every down file, so one run lists every problem.
            problems = [p for m in self.migrations for p in m.down_problems()]
            raise LayoutError(
                f"{direction}: {len(problems)} problem(s) in the down files; nothing was changed",
                details=problems,
            )
        tracking = (self.config.table[-1], self.config.history_table[-1])
        schema = self.tracker.schema or self.tracker.resolved_schema
        problems = [p for step in plan.steps for p in body_problems(step, tracking, schema)]
        if problems:
            raise LayoutError(
                f"{direction}: {len(problems)} statement(s) a step cannot run; nothing was changed",
                details=problems,
            )
        dirty = [r.version for r in rows if r.state == "dirty"]
        if dirty:
            # Say what the interrupted step left behind, from its history row.
            last: dict[int, str] = {}
            for h in self.tracker.history_rows(limit=200):  # newest first: keep the first seen
                if h.version in dirty and h.message:
                    last.setdefault(h.version, h.message)
            for i, reason in enumerate(plan.refusals):
                for v in dirty:
                    if reason.startswith(f"version {v} ") and v in last:
                        plan.refusals[i] = f"{reason}. Last recorded progress: {last[v]}"
        return plan

    # ---- guards --------------------------------------------------------------

    def _eval_guard(self, guard: Guard) -> GuardResult:
        """Run one guard in a read-only savepoint that is always rolled back."""
        self.conn.execute(_GUARD_OPEN)
        try:
            result = self._guard_query(guard)
        except (pgerrors.QueryCanceled, pgerrors.LockNotAvailable):
            self.conn.execute("ROLLBACK TO SAVEPOINT vezamig_guard")
            raise
        self.conn.execute(_GUARD_CLOSE)
        return result

    def _guard_query(self, guard: Guard) -> GuardResult:
        """The guard's verdict; the caller has opened the read-only savepoint and rolls it back."""
        try:
            # In a pipeline psycopg always uses the extended protocol: one statement, never
            # a `; SET …` after it. Read raw, in text format: the value as PostgreSQL
            # writes it, and no Python object built for a verdict.
            # Under the run lock, the same round trip asks whether the guard left it held.
            # prepare=False: a guard runs once per step; a prepared statement would outlive
            # the step and be deallocated by psycopg with a message of its own.
            # The savepoint is rolled back in the same round trip: what a guard set
            # (`set_config('standard_conforming_strings', 'off', false)`) must be undone
            # before the server parses the step's next message, the body with it.
            with self.conn.pipeline():
                cur = self.conn.execute(_two_rows_at_most(guard.query), binary=False, prepare=False)
                held = (
                    self.conn.execute(self._lock_held, prepare=False) if self._lock_held else None
                )
                self.conn.execute(_GUARD_UNDO, prepare=False)
            if held is not None and held.fetchone() == (0,):
                return GuardResult(
                    guard,
                    False,
                    "its answer does not count: it released vezamig's run lock "
                    "(pg_advisory_unlock_all()?); a guard must only read, and without the "
                    "lock another run could apply the same versions at once",
                    released=True,
                )
            res = cur.pgresult
            rows = res.ntuples if res is not None else 0
            columns = res.nfields if res is not None else 0
            raw = res.get_value(0, 0) if res is not None and rows and columns else None
            first = None if raw is None else raw.decode(self.conn.info.encoding, "replace")
            type_name = cur.description[0].type_display if cur.description else None
            returned = describe_result(rows, columns, first, type_name)
            is_bool = res is not None and columns >= 1 and res.ftype(0) == _BOOL_OID
            passed = rows == 1 and is_bool and first == "t"
        except pgerrors.LockNotAvailable:
            raise  # lock_timeout: the step is retried, not judged
        except pgerrors.QueryCanceled as exc:
            if "statement timeout" not in (exc.diag.message_primary or ""):
                raise  # cancelled (Ctrl-C, pg_cancel_backend): not a verdict either
            # A guard that cannot answer in time is an SQL error: it refuses (SPEC §2),
            # exactly as the dry run reports it.
            returned = (
                f"an error: {exc.diag.sqlstate} {exc.diag.message_primary} "
                f"(--statement-timeout {self.config.statement_timeout_ms} ms)"
            )
            passed = False
        except psycopg.Error as exc:
            if self.conn.broken or self.conn.closed or _lost_session(exc):
                raise  # the server went away: the step failed, no guard said no
            diag = exc.diag
            # No SQLSTATE for an error of the client's own (out of memory): not "None".
            code = f"{diag.sqlstate} " if diag.sqlstate else ""
            returned = f"an error: {code}{diag.message_primary or str(exc).strip()}"
            passed = False
        return GuardResult(guard, passed, returned)

    def missing_lock_tables(self, plan: Plan) -> dict[tuple[int, str], list[tuple[int, str, str]]]:
        """For --dry-run: the `vezamig:lock` tables of each step that cannot be locked
        now, as (directive line, name, why): one that does not exist, or a relation
        LOCK TABLE refuses (a sequence, an index, a materialized view). The real
        step's LOCK comes before its guards and fails on them (exit 1), so its guards
        are not evaluated: a guard's error there would read as a refusal."""
        from vezamig.sqltext import written_name

        wanted = {
            (step.version, step.direction): [
                (lock.line, sql.Identifier(*t).as_string(self.conn), ".".join(map(written_name, t)))
                for lock in step.directives.locks
                for t in lock.tables
            ]
            for step in plan.steps
            if (step.direction == "up" or step.migration.down is not None) and step.directives.locks
        }
        if not wanted:
            return {}
        names = sorted({n for ns in wanted.values() for _, n, _ in ns})
        why = {
            name: "does not exist"
            if kind is None
            else f"is {_RELKIND_WORDS.get(kind, 'not a table')}"
            for name, kind in self.conn.execute(
                "SELECT t, (SELECT relkind::text FROM pg_class WHERE oid = to_regclass(t))"
                " FROM unnest(%s::text[]) t",
                [names],
            )
            if kind not in _LOCKABLE
        }
        return {
            key: m
            for key, ns in wanted.items()
            if (m := [(line, shown, why[name]) for line, name, shown in ns if name in why])
        }

    def evaluate_guards(
        self, plan: Plan, skip: Collection[tuple[int, str]] = ()
    ) -> dict[tuple[int, str], list[GuardResult]]:
        """For --dry-run: each guard's current result, in a read-only transaction; also
        when the plan is refused for other reasons, so one dry run shows every blocker.
        ``skip``: steps whose guards cannot be judged now (see missing_lock_tables)."""
        out: dict[tuple[int, str], list[GuardResult]] = {}
        probe: RunLock | None = None
        try:
            for step in plan.steps:
                if step.direction == "down" and step.migration.down is None:
                    continue  # irreversible: refused by the plan, nothing to evaluate
                guards = step.directives.guards
                if not guards or (step.version, step.direction) in skip:
                    continue
                if self._lock_held is None:  # see hold_probe_lock
                    probe = probe or hold_probe_lock(self.conn)
                    self._lock_held = run_lock_held_sql(self.conn, probe)
                self.conn.execute("BEGIN READ ONLY; " + self.timeouts_sql())
                try:
                    results = out[(step.version, step.direction)] = []
                    for g in guards:
                        results.append(self._dry_guard(g))
                        if results[-1].released and probe is not None:
                            # Judge the next guards on their own: a probe held again.
                            probe = hold_probe_lock(self.conn)
                            self._lock_held = run_lock_held_sql(self.conn, probe)
                finally:
                    self._rollback()  # a lost session's own error is the one to report
        finally:
            if probe is not None:
                self._lock_held = None
                with suppress(psycopg.Error):  # a guard may have released it already
                    release_run_lock(self.conn, probe)
        return out

    def timeouts_sql(self) -> str:
        """The step's timeouts, so a dry run cannot hang behind a lock either."""
        cfg = self.config
        return (
            sql.SQL("SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}")
            .format(
                sql.Literal(f"{cfg.lock_timeout_ms}ms"),
                sql.Literal(f"{cfg.statement_timeout_ms}ms"),
            )
            .as_string(self.conn)
        )

    def _dry_guard(self, guard: Guard) -> GuardResult:
        try:
            return self._eval_guard(guard)
        except pgerrors.LockNotAvailable as exc:
            return GuardResult(
                guard,
                False,
                f"an error: {exc.diag.sqlstate} {exc.diag.message_primary} "
                "(another session holds a lock it needs)",
                blocked=True,
            )

    # ---- executing -----------------------------------------------------------

    def execute(self, plan: Plan) -> RunResult:
        """Run every step of a plan whose preflight passed; stop at the first failure."""
        if plan.refusals:
            raise Refused(f"{plan.direction} refused; nothing was changed", details=plan.refusals)
        result = RunResult(plan)
        if not plan.steps:
            return result
        self.check_writable()
        self.tracker.ensure()
        t_run = time.monotonic()
        with self._signals_cancel():
            try:
                self._run_steps(plan, result)
            except VezamigError as exc:
                self._say_what_ran(exc, plan, result)
                self._adopt_hint(exc, plan, result)
                raise
        result.elapsed_ms = _ms_since(t_run)
        return result

    def _run_steps(self, plan: Plan, result: RunResult) -> None:
        for step in plan.steps:
            if self._signal is not None:
                raise Interrupted(
                    f"{self._signal_name()} before {step.direction} {step.version} "
                    f"({step.migration.name}) started; nothing of it was run",
                    exit_code=self._signal_code(),
                )
            self.reporter.step_started(step)
            self._stop_if_output_lost(plan, step, finished=False)
            result.unfinished = step
            try:
                if step.directives.no_transaction:
                    res = self._run_no_tx(step)
                else:
                    res = self._run_tx(step)
            except StepFailed as exc:
                exc.applied = [r.version for r in result.results]
                raise
            result.results.append(res)
            result.unfinished = None
            self.reporter.step_finished(res)
            self._stop_if_output_lost(plan, step, finished=True)
            self._stop_if_lock_released(plan, step)
            if self._stop_after is not None:
                raise self._stop_after
            if self._signal is not None:
                raise Interrupted(
                    f"{self._signal_name()} while {step.direction} {step.version} "
                    f"({step.migration.name}) ran; it finished first and is "
                    f"{'applied' if step.direction == 'up' else 'rolled back'}; no later "
                    "step was run",
                    exit_code=self._signal_code(),
                )

    def _stop_if_output_lost(self, plan: Plan, step: Step, *, finished: bool) -> None:
        """Steps go on only while their output can be written: an operator must see what
        a run did, and a step is never cut off half-way for it."""
        lost = self.reporter.lost
        if lost is None:
            return
        what = f"{step.direction} {step.version} ({step.migration.name})"
        if not finished:
            when = f"before {what} started; nothing of it was run"
        else:
            done = "applied" if step.direction == "up" else "rolled back"
            when = f"after {what} finished; it is {done}"
            if step is not plan.steps[-1]:
                when += "; no later step was run"
        raise OutputLost(lost.error, lost.stream, when)

    def _stop_if_lock_released(self, plan: Plan, step: Step) -> None:
        """A body that calls pg_advisory_unlock_all() (or unlocks vezamig's key) ends the
        one-run-at-a-time rule for the rest of the run: another run could plan and apply
        the same versions at once. Asked only after a step whose text mentions it (a
        query per step otherwise); then the run stops, the step being done."""
        if self._lock_held is None or "advisory_unlock" not in step.file.text.lower():
            return
        row = self.conn.execute(self._lock_held).fetchone()
        if row != (0,):
            return
        what = f"{step.direction} {step.version} ({step.migration.name})"
        done = "applied" if step.direction == "up" else "rolled back"
        later = "; no later step was run" if step is not plan.steps[-1] else ""
        raise LockBusy(
            f"{what} released vezamig's run lock (pg_advisory_unlock_all()?); it is "
            f"{done}, and the run stops here{later}: without the lock another run could "
            "apply the same versions at once",
            details=[
                f"remove the unlock from {step.file.path} (pg_advisory_xact_lock takes a "
                "lock of the step's own, released at its COMMIT), then run the command again"
            ],
        )

    def still_connected(self) -> None:
        """After waiting for the operator (a confirmation prompt) the server may have
        ended the idle session (idle_session_timeout), and the run lock with it. Nothing
        was done yet: say so, instead of failing the first step on a dead connection."""
        try:
            self.conn.execute("SELECT 1")
        except psycopg.Error as exc:
            if not (self.conn.broken or self.conn.closed or _lost_session(exc)):
                raise
            raise ConnectError(
                "the database ended the session while vezamig waited for the answer: "
                f"{str(exc).strip()}",
                details=[
                    "nothing was changed; run the command again (a server's "
                    "idle_session_timeout shorter than the wait ends such a session)"
                ],
            ) from None

    def _adopt_hint(self, exc: VezamigError, plan: Plan, result: RunResult) -> None:
        """The first `up` on a database that vezamig has recorded nothing for, whose
        first step finds what it creates already there: a schema made without vezamig,
        or restored by `pg_dump --schema-only` (the tracking tables come back empty).
        The way forward is baseline, not the error's own advice."""
        if not (
            isinstance(exc, StepFailed)
            and exc.sqlstate in _ALREADY_EXISTS
            and plan.direction == "up"
            and not result.results
            and plan.steps
            and plan.steps[0] is result.unfinished
            and not self._recorded_any
        ):
            return
        last = max(m.version for m in self.migrations)
        exc.details.append(
            "vezamig has recorded nothing for this database, yet what its first migration "
            "creates is already there: if the schema was made without vezamig, or restored "
            "with pg_dump --schema-only (which leaves the tracking tables empty), record the "
            f"versions it already has instead: `{self.config.command('baseline --version V')}`"
            f" (V: the last version it has; the files go up to {last}), then `up`"
        )

    def _say_what_ran(self, exc: VezamigError, plan: Plan, result: RunResult) -> None:
        """A run that stopped part-way says what it did before the step named in its
        message, what it did not run, and where the database now stands: an operator
        re-runs `down --to V` from there, and a promised "V stays applied" did not
        happen. A one-step run's message already says all of it."""
        done = result.results
        at = plan.steps.index(result.unfinished) + 1 if result.unfinished else len(done)
        not_run = plan.steps[at:]
        if not done and not not_run:
            return
        verb = "applied" if plan.direction == "up" else "rolled back"
        # "before it": the message names a step that did not finish; one that did (the
        # run stopped after it) is among those this run did.
        before = " before it" if result.unfinished else ""
        parts = [
            f"this run {verb} {_versions([(r.version, r.name) for r in done])}{before}"
            if done
            else f"this run changed nothing{before}"
        ]
        if not_run:
            parts.append(f"not run: {_versions([(s.version, s.migration.name) for s in not_run])}")
        current = self._current_version()
        if current is not None:
            parts.append(f"current version {current}")
        exc.details.append("; ".join(parts))

    def _current_version(self) -> int | None:
        """The highest recorded version (dirty included, as `status` counts it), or None
        when it cannot be read now: a lost connection, a lock, a second stop signal."""
        if self.conn.closed or self.conn.broken:
            return None
        self._rollback()
        try:
            # As the user who connected: a failed no-transaction step may have left the
            # session under a role (SET ROLE) that may not read the tracking table.
            self.conn.execute(f"BEGIN READ ONLY; {_AS_SESSION_USER}; SET LOCAL lock_timeout = 2000")
            row = self.conn.execute(
                sql.SQL("SELECT coalesce(max(version), 0) FROM {}")
                .format(self.tracker.table)
                .as_string(self.conn)
            ).fetchone()
            self.conn.execute("COMMIT")
        except (psycopg.Error, KeyboardInterrupt, SystemExit):
            self._rollback()
            return None
        return int(row[0]) if row else None

    @contextmanager
    def _signals_cancel(self) -> Iterator[None]:
        """While steps run, Ctrl-C, SIGTERM and SIGHUP cancel the server's running
        statement and mark the run as stopping, instead of raising wherever Python is:
        psycopg would then re-raise only after the step's whole message was done, and
        a COMMIT that had already run would read as rolled back. Each step checks the
        mark where it can stop cleanly, so its outcome is known and told. A second
        signal raises at once, as before. (Main thread only; a signal vezamig's caller
        ignores, such as SIGHUP under nohup, stays ignored.)"""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous: dict[int, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            if self._signal is not None:  # the second one: stop now
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                raise SystemExit(128 + signum)
            self._signal = signum
            with suppress(Exception):
                self.conn.cancel_safe(timeout=5)

        for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            handler = signal.getsignal(stop)
            if handler is not signal.SIG_IGN:
                previous[stop] = handler
                signal.signal(stop, on_signal)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _signal_code(self) -> int:
        return 130 if self._signal in (None, signal.SIGINT) else 128 + int(self._signal)

    def _signal_name(self) -> str:
        return {signal.SIGTERM: "terminated (SIGTERM)", signal.SIGHUP: "hung up (SIGHUP)"}.get(
            signal.Signals(self._signal or signal.SIGINT), "interrupted"
        )

    def _check_signal(self) -> None:
        """Raise _Stop when a stop signal came: called where a step can stop cleanly."""
        if self._signal is not None:
            raise _Stop

    def _prelude(self, step: Step) -> str:
        if self._begin is None:  # the same for every step of the run
            self._begin = "BEGIN; " + self.timeouts_sql()
        tables = step.directives.lock_tables
        if not tables:
            return self._begin
        lock = sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.SQL(", ").join(sql.Identifier(*t) for t in tables)
        )
        return self._begin + "; " + lock.as_string(self.conn)

    def _reset_sql(self) -> str:
        """Sent after each step: the next one starts from the session's defaults.

        A migration's session-level settings (a pg_dump file's `set_config('search_path',
        '', false)`, SET ROLE, SET SESSION CHARACTERISTICS, session_replication_role,
        default_tablespace, …) must not change how the next step runs, in a run as in a
        roundtrip. RESET ALL runs after COMMIT, in the step's own message, so it costs no
        round trip and the next BEGIN starts a clean transaction; vezamig's own session
        settings are sent again after it (the socket polling only where the server
        accepted it with the run lock).
        """
        # RESET ALL leaves the role and session user alone: switched back explicitly.
        setup = session_setup(
            self.conn, check_connection=self._polls is not False, sync=self._forced_sync
        )
        return _SESSION_RESET + (f"; {setup}" if setup else "")

    @staticmethod
    def _ok(step: Step, t0: float, retried: str | None) -> StepResult:
        m = step.migration
        return StepResult(m.version, m.name, step.direction, "ok", _ms_since(t0), retried or "")

    def _committed_before(self, exc: psycopg.Error) -> bool:
        """The step's message failed after its COMMIT, in the session reset that follows
        it: the step is applied. The one statement there that can be refused is the
        socket-polling setting (a platform that cannot poll), and only once it has been
        refused is the session idle with that error (a failed COMMIT is idle too, but
        with its own error)."""
        if (
            self.conn.broken
            or self.conn.closed
            or self.conn.info.transaction_status != 0
            or not isinstance(exc, NO_SOCKET_POLLING)
            or "client_connection_check_interval" not in str(exc)
        ):
            return False
        self._committed_before_reset_failed()
        return True

    def _committed_before_reset_failed(self) -> None:
        self._polls = False  # the one setting the reset may be refused: do without it
        with suppress(psycopg.Error):
            self.conn.execute(self._reset_sql())

    def _history(
        self,
        step: Step,
        outcome: str,
        started_at: sql.Composable,
        duration_ms: int | sql.Composable,
        message: str | None = None,
    ) -> sql.SQL:
        return self.tracker.history_sql(
            version=step.version,
            name=step.migration.name,
            direction=step.direction,
            outcome=outcome,
            checksum=step.migration.checksum,
            started_at=started_at,
            duration_ms=duration_ms,
            message=message,
        )

    def _rollback(self) -> None:
        if not self.conn.closed and self.conn.info.transaction_status != 0:  # 0 = IDLE
            with suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")

    def _refused(self, step: Step, g: GuardResult, t0: float) -> GuardRefused:
        """Record a guard's refusal (after the rollback) and describe it: file, line, query,
        what it returned."""
        f = step.file
        self._record_failure(
            step,
            "refused",
            t0,
            f"guard at {f.path}:{g.guard.line} returned {g.returned}: {g.guard.query}",
        )
        return GuardRefused(
            f"{step.direction} {step.version} ({step.migration.name}) refused by its guard; "
            "nothing of this step was changed",
            details=[
                f"file:     {f.path}:{g.guard.line}",
                f"guard:    {g.guard.query}",
                f"returned: {g.returned} (needs exactly one row: true)",
            ],
        )

    def _record_failure(
        self,
        step: Step,
        outcome: str,
        t0: float,
        message: str,
        *,
        conn: Connection | None = None,
    ) -> None:
        """The refused or failed step's history row, after its rollback; ``conn``: a
        new connection, when the run's own was lost."""
        conn = conn or self.conn
        if conn.closed or conn.broken:
            return  # nothing can be written; the server rolled the step back
        try:
            row = self.tracker.exactly_one(
                self._history(step, outcome, _server_time_at(t0), _ms_since(t0), message).as_string(
                    conn
                ),
                self.tracker.history_label,
            )
            script = self._stopping_write(row, lost=conn is not self.conn)
            if script == row:  # bounded as a step is: a lock on the history must not hang it
                script = f"BEGIN READ WRITE; {self._lock_sql()}; {row}; COMMIT"
            conn.execute(script)
        except (KeyboardInterrupt, SystemExit):
            # A second stop signal while the row was written: the step's own message
            # still says what happened; the audit log's gap is said too.
            self._rollback()
            self.reporter.info(
                f"warning: the {outcome} {step.direction} of {step.version} may be missing "
                f"from {self.tracker.history_label}: a second stop signal came while it "
                "was written"
            )
        except psycopg.Error as exc:
            # The step's own error says what happened; the audit log's gap is said too.
            if not (conn.closed or conn.broken) and conn.info.transaction_status != 0:
                with suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            self.reporter.info(
                f"warning: the {outcome} {step.direction} of {step.version} could not be "
                f"recorded in {self.tracker.history_label}: "
                f"{(exc.diag.message_primary or str(exc)).strip()}"
            )

    @staticmethod
    def _locate(
        step: Step, exc: psycopg.Error, cur: _CountingCursor | None, body_start: int, n_prefix: int
    ) -> tuple[str, int | None]:
        """Which part of the step's message failed: (phase, offset for _explain).

        With a server position the offset is relative, so that _explain's
        ``offset + position - 1`` lands in the file; without one, the count of
        statements that completed names the statement (found by the parser, on
        this failure path only).
        """
        pos = exc.diag.statement_position
        text = step.file.text
        if pos:
            in_body = int(pos) - 1 - body_start
            if 0 <= in_body <= len(text):
                return "body", -body_start
            return ("lock" if in_body < 0 else "bookkeeping"), None
        done = cur.completed if cur is not None else None
        if done is None:
            return "bookkeeping", None
        if done < n_prefix:
            return "lock", None
        from vezamig.sqltext import analyze, lexical_statements

        parsed = analyze(text)
        if parsed.error is None:
            starts = [s.start for s in parsed.statements]
        else:  # pglast cannot parse what the server ran (a newer grammar): the lexer's
            starts = [words[0].start for words in lexical_statements(text) or []]
        if done - n_prefix < len(starts):
            return "body", starts[done - n_prefix]
        return "bookkeeping", None

    def _run_tx(self, step: Step) -> StepResult:
        attempt = 0
        while True:
            t0 = time.monotonic()
            phase = "lock"
            body: _CountingCursor | None = None
            body_start = n_prefix = 0
            retried: str | None = None
            try:
                # Round trips: one message for a plain step (prelude, body, bookkeeping,
                # COMMIT); each guard adds its query and the message that opens its
                # savepoint (SPEC §3 order: locks → guards → body → bookkeeping).
                prefix, n_prefix = self._prelude(step), 3 + bool(step.directives.lock_tables)
                guards = step.directives.guards
                for i, guard in enumerate(guards):
                    phase = "lock" if i == 0 else "guard"
                    self._check_signal()
                    self.conn.execute(prefix + "; " + _GUARD_OPEN)
                    phase = "guard"
                    self._guard_at = guard
                    g = self._guard_query(guard)
                    self._check_signal()
                    if not g.passed:
                        self._rollback()
                        raise self._refused(step, g, t0)
                    prefix, n_prefix = _GUARD_CLOSE, 2
                phase = "step"
                so_far = (
                    sql.SQL("{} + ").format(sql.Literal(_ms_since(t0))) if guards else sql.SQL("")
                )
                duration = sql.Composed([so_far, _SERVER_MS])
                record = (
                    self.tracker.record_sql(
                        step.version, step.migration.name, step.migration.checksum, duration
                    )
                    if step.direction == "up"
                    else self.tracker.unrecord_sql(step.version)
                )
                # started_at: now() is the start of the step's transaction (its BEGIN).
                retried = _retried(attempt) or None
                history = self._history(step, "ok", TRANSACTION_START, duration, retried)
                body_start = len(prefix) + 2
                # "\n;" ends a body whose last line is a -- comment, or lacks its semicolon.
                one = self.tracker.exactly_one
                message = (
                    f"{prefix};\n{step.file.text}\n;{_BEFORE_BOOKKEEPING}; "
                    f"{one(record, self.tracker.label)}; "
                    f"{one(history, self.tracker.history_label)}; COMMIT; "
                    f"{self._reset_sql()}"
                )
                self._check_signal()
                body = _CountingCursor(self.conn)
                self._sent = message
                body.execute(message)
                return self._ok(step, t0, retried)
            except _Stop:
                self._rollback()
                raise self._interrupted(step, self._signal_code(), t0) from None
            except pgerrors.LockNotAvailable as exc:
                self._rollback()
                if self._signal is not None:
                    raise self._interrupted(step, self._signal_code(), t0) from None
                with suppress(psycopg.Error):  # a PREPARE outlives the rollback
                    self.conn.execute("DEALLOCATE ALL")
                attempt += 1
                self._wait_to_retry(step, exc, attempt, t0)
            except (KeyboardInterrupt, SystemExit) as exc:
                # A second signal, or one outside _signals_cancel: psycopg re-raises it
                # once the whole message is done, COMMIT included if it got that far.
                self._rollback()
                if phase == "step" and self._step_committed(step):
                    self._stop_after = self._finished_first(step, stop_code(exc))
                    return self._ok(step, t0, retried)
                raise self._interrupted(step, exc, t0) from None
            except psycopg.Error as exc:
                if self._committed_before(exc):
                    return self._ok(step, t0, retried)
                if self.conn.broken or self.conn.closed:
                    return self._lost_in_step(step, exc, t0, retried)
                if self._signal is not None:
                    # Our own cancel (see _signals_cancel): the step stopped where it was.
                    self._rollback()
                    if phase == "step" and self._step_committed(step):
                        return self._ok(step, t0, retried)  # then execute() stops the run
                    raise self._interrupted(step, self._signal_code(), t0) from None
                self._rollback()
                raise self._tx_failure(step, exc, phase, (body, body_start, n_prefix), t0) from None

    def _tx_failure(
        self,
        step: Step,
        exc: psycopg.Error,
        phase: str,
        at: tuple[_CountingCursor | None, int, int],
        t0: float,
    ) -> VezamigError:
        """The error for a step rolled back by an SQL error (already rolled back): where
        it failed (``at``: the body's cursor, where the file starts in the message, the
        prelude's statement count), with the failure's history row written."""
        from vezamig.sqltext import excerpt, line_col

        body, body_start, n_prefix = at
        failed_at: int | None = None
        if phase == "step":
            phase, failed_at = self._locate(step, exc, body, body_start, n_prefix)
        unfinished = (
            self._unfinished_text(step)
            if phase == "bookkeeping" or exc.diag.sqlstate == "42601"
            else None
        )
        lines = unfinished or self._explain(step, exc, phase, offset=failed_at)
        if (
            failed_at is not None
            and not exc.diag.statement_position
            and not (self.conn.broken or self.conn.closed)
        ):
            # No position from the server: show where the failing statement starts.
            lines += excerpt(step.file.text, line_col(step.file.text, failed_at).line)
        self._record_failure(step, "failed", t0, lines[0])
        if phase == "bookkeeping" and isinstance(exc, pgerrors.InsufficientPrivilege):
            # The body ran, but the role may not record it: a configuration
            # error (exit 2), the same as when it cannot read the tables.
            return UsageError(
                f"{step.direction} {step.version} ({step.migration.name}) was rolled "
                "back: the database role may not write vezamig's tracking tables "
                f"({exc.diag.message_primary})",
                details=[
                    grant_hint(self.tracker.label, self.tracker.history_label, self.conn.info.user)
                ],
            )
        return StepFailed(
            f"{step.direction} {step.version} ({step.migration.name}) failed and was rolled back",
            details=lines,
            version=step.version,
            sqlstate=exc.diag.sqlstate,
        )

    def _wait_to_retry(
        self,
        step: Step,
        exc: pgerrors.LockNotAvailable,
        attempt: int,
        t0: float,
    ) -> None:
        """After a lock timeout (rolled back): pause before attempt ``attempt + 1``, or
        give up (exit 4) with one history row for the step's final outcome."""
        if attempt > self.config.lock_retries:
            msg = (
                f"lock timeout ({self.config.lock_timeout_ms} ms) after {attempt} "
                f"attempt(s): {exc.diag.message_primary}"
            )
            self._record_failure(step, "failed", t0, msg)
            raise LockBusy(
                f"{step.direction} {step.version} ({step.migration.name}) gave up: "
                f"{msg}; the step was rolled back",
                details=[
                    "another session holds a lock this step needs; find it with "
                    "pg_locks/pg_stat_activity, or retry later / raise "
                    "--lock-timeout or --lock-retries"
                ],
            ) from None
        pause = retry_pause(attempt)
        self.reporter.info(
            f"{step.version}: lock timeout ({exc.diag.message_primary}); rolled back, "
            f"retry {attempt}/{self.config.lock_retries} in {pause:g}s"
        )
        try:
            # In slices: a stop signal only marks the run (_signals_cancel).
            end = time.monotonic() + pause
            while (left := end - time.monotonic()) > 0:
                if self._signal is not None:
                    raise SystemExit(self._signal_code())
                time.sleep(min(left, 0.05))
        except (KeyboardInterrupt, SystemExit) as stop:
            raise self._interrupted(
                step,
                stop,
                t0,
                history=f"interrupted while waiting to retry after a lock timeout "
                f"({attempt} attempt(s))",
                then=" while waiting to retry after a lock timeout; the step was rolled back",
            ) from None

    def _interrupted(
        self,
        step: Step,
        stop: KeyboardInterrupt | SystemExit | int,
        t0: float,
        *,
        history: str = "interrupted",
        then: str = "; the running statement was cancelled and the step rolled back",
    ) -> Interrupted:
        """Ctrl-C or SIGTERM in a step (rolled back by the caller): its history row, and
        the error that names it (exit 130, or SIGTERM's code)."""
        code = stop if isinstance(stop, int) else stop_code(stop)
        self._record_failure(step, "failed", t0, history)
        return Interrupted(
            f"interrupted during {step.direction} {step.version} ({step.migration.name}){then}",
            exit_code=code,
        )

    def _lost_in_step(
        self, step: Step, exc: psycopg.Error, t0: float, retried: str | None
    ) -> StepResult:
        """The connection broke during a transactional step: whether its COMMIT ran is
        asked on a new connection, once the old session is gone (a backend that lives
        on could still commit), and the failed step's history row written there.
        Without a server to ask, say it is not known."""
        head = f"{step.direction} {step.version} ({step.migration.name})"
        where = f"{step.file.path}: connection lost during the step: {str(exc).strip()}"
        committed = None
        other = self._other_connection()
        try:
            if other is not None:
                committed = self._committed_on(other, step)
            if committed:
                self._stop_after = ConnectError(
                    f"lost the database connection after {head} committed: it is "
                    f"{'applied' if step.direction == 'up' else 'rolled back'} (checked on a "
                    "new connection); no later step was run",
                    details=[where, "run the command again once the database is reachable"],
                )
                return self._ok(step, t0, retried)
            if committed is None and self._signal is not None:
                raise Interrupted(
                    f"{self._signal_name()} while checking what became of {head} after the "
                    "connection was lost: whether its COMMIT ran is not known",
                    exit_code=self._signal_code(),
                ) from None
            if committed is None:
                raise ConnectError(
                    f"lost the database connection during {head}, and whether its COMMIT "
                    "ran is not known: the server cannot be reached to check (or the lost "
                    "session, still running, could not be ended)",
                    details=[
                        where,
                        "run `vezamig status` once the database is back: the tracking row is "
                        "written in the step's own transaction, so it tells whether the step "
                        "is applied; the history lacks this step's row",
                    ],
                ) from None
            self._record_failure(step, "failed", t0, "connection lost during the step", conn=other)
        finally:
            if other is not None:
                other.close()
        raise StepFailed(
            f"{head} failed and was rolled back",
            details=[
                where,
                "the step did not commit (checked on a new connection, once the lost "
                "session had ended): nothing of it is applied; run the command again",
            ],
            version=step.version,
        ) from None

    def _other_connection(self) -> Connection | None:
        """A new connection after the run's own was lost; None if the server cannot be
        reached within ≈ 10 s (a restarting server answers again within that)."""
        from vezamig.db import connect

        self.reporter.info("connection lost; checking on a new connection what became of the step")
        deadline = time.monotonic() + 10
        while self._signal is None:
            try:
                return connect(self.config.conninfo, self.config.application, writing=False,
                               timeout=3)  # fmt: skip
            except VezamigError:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.5)
        return None

    def _committed_on(
        self,
        other: Connection,
        step: Step,
        done: Callable[[bool, bool], bool] | None = None,
    ) -> bool | None:
        """Whether the step's COMMIT ran, asked on ``other`` once the lost session has
        ended (it is ended here if it lives on); None if it cannot be ended. ``done``:
        what the tracking row (recorded, dirty) looks like once the write that was lost
        committed (default: the step's own bookkeeping)."""
        # Ours: that pid, still showing the start of this step's message (a pid the
        # server gave to a new session since shows another query; the application
        # name is no sign: the body may have set it).
        alive = "SELECT pid FROM pg_stat_activity WHERE pid = %s AND left(query, 64) = left(%s, 64)"
        key = (self._pid, self._sent)
        try:
            if other.execute(alive, key).fetchone() is not None:
                other.execute("SELECT pg_terminate_backend(%s)", (self._pid,))
                deadline = time.monotonic() + 5
                while other.execute(alive, key).fetchone() is not None:
                    if time.monotonic() >= deadline:
                        return None  # still running, not ours to end: it may yet commit
                    time.sleep(0.1)
            recorded, dirty = self._row_of(other, step.version)
        except psycopg.Error:
            return None
        if done is not None:
            return done(recorded, dirty)
        return recorded if step.direction == "up" else not recorded

    def _finished_first(self, step: Step, code: int) -> Interrupted:
        """The stop came while the step committed: it is done, and the run ends."""
        return Interrupted(
            f"interrupted while {step.direction} {step.version} ({step.migration.name}) ran; "
            f"it finished first and is {'applied' if step.direction == 'up' else 'rolled back'}"
            "; no later step was run",
            exit_code=code,
        )

    def _step_committed(self, step: Step) -> bool:
        """After a stop during a step's message: did its COMMIT run? The tracking row is
        written in the step's own transaction, so it tells."""
        if self.conn.closed or self.conn.broken:
            return False
        try:
            recorded, _ = self._row_of(self.conn, step.version)
        except psycopg.Error:
            self._rollback()
            return False
        return recorded if step.direction == "up" else not recorded

    def _row_of(self, conn: Connection, version: int) -> tuple[bool, bool]:
        """Whether ``version`` has a tracking row, and whether it is dirty (read on
        ``conn``; psycopg errors are the caller's)."""
        row = conn.execute(self.tracker.row_sql(version).as_string(conn)).fetchone()
        return row is not None, bool(row is not None and row[0])

    def _unfinished_text(self, step: Step) -> list[str] | None:
        """A body that ends inside a string, a dollar quote or a comment swallows the
        bookkeeping after it, and the server's error quotes vezamig's own SQL: say
        what is wrong with the file instead, as `verify` would (failure path only)."""
        from vezamig.sqltext import analyze, excerpt

        f = step.file
        err = analyze(f.text).error
        if err is None or "unterminated" not in err.message:
            return None
        return [
            f"{f.path}:{err.line}:{err.column}: {' '.join(err.message.split())}",
            *excerpt(f.text, err.line, column=err.column),
            "the file ends inside a string, a dollar quote or a comment, so PostgreSQL "
            "read the rest of the step as part of it; nothing of the step ran "
            "(`vezamig verify` finds this without a database)",
        ]

    def _explain(
        self,
        step: Step,
        exc: psycopg.Error,
        phase: str,
        text: str | None = None,
        offset: int | None = None,
    ) -> list[str]:
        """file:line:column, SQLSTATE, message, detail, hint, and the offending lines."""
        from vezamig.sqltext import excerpt, line_col, psql_hint

        diag = exc.diag
        f = step.file
        text = f.text if text is None else text
        where = f"{f.path}"
        lines: list[str] = []
        if (skipped := skipped_bookkeeping(exc)) is not None:
            return [f"{where}: {skipped}"]
        pos = diag.statement_position
        if self.conn.broken or self.conn.closed:
            lines.append(f"{where}: connection lost during the step: {str(exc).strip()}")
            lines.append(
                "the server rolled the step back; run the command again once the "
                "database is reachable"
            )
            return lines
        if (
            diag.sqlstate == "22P05"
            and not pos
            and (at := self._unencodable(f.text, offset or 0)) is not None
        ):
            # The server converts the whole message (or statement) before parsing it,
            # so it reports no position: the first such character is the place.
            offset, pos, phase = at, "1", "body"
        if phase == "body" and pos:
            p = line_col(f.text, (offset or 0) + int(pos) - 1)
            where = f"{f.path}:{p.line}:{p.column}"
        elif phase == "body" and offset is not None:
            p = line_col(f.text, offset)
            where = f"{f.path}:{p.line}:{p.column}"
        elif phase == "lock" and step.directives.locks:
            line, column = _lock_position(step, diag.message_primary or "")
            where = f"{f.path}:{line}:{column}"
        elif phase == "guard" and self._guard_at is not None:
            where = f"{f.path}:{self._guard_at.line}"
        sqlstate = diag.sqlstate or "?"
        primary = " ".join((diag.message_primary or str(exc).strip()).split())  # one line
        lines.append(f"{where}: {sqlstate} {primary}")
        if diag.message_detail:
            lines.append(f"detail: {diag.message_detail}")
        if diag.message_hint:
            lines.append(f"hint: {diag.message_hint}")
        elif diag.sqlstate == "25001" and "DISCARD ALL" in primary:
            lines.append(
                "hint: use DISCARD TEMP, DISCARD PLANS or DEALLOCATE ALL for what you need "
                "(each step's session is reset after it anyway); DISCARD ALL would release "
                "vezamig's run lock"
            )
        elif (
            diag.sqlstate == "25001"
            and "must be called before any query" in primary
            and (step.directives.guards or step.directives.locks)
        ):
            lines.append(
                "hint: the step's transaction runs its `vezamig:lock` and guards first, so "
                "a SET TRANSACTION in its body comes after a query; drop it (the step runs "
                "at the session's default level), or move the guard into the body's own "
                "checks and put SET TRANSACTION first"
            )
        elif diag.sqlstate == "25001" and not step.directives.no_transaction and not diag.context:
            # Not from inside a function or DO block: there it fails outside a
            # transaction too ("cannot be executed from a function").
            lines.append(
                "hint: this statement cannot run inside a transaction: move it to a "
                "migration of its own whose header has `-- vezamig:no-transaction`"
            )
        elif hint := psql_hint(primary):
            lines.append(f"hint: {hint}")
        if diag.context:
            lines.append(f"context: {diag.context.strip()}")
        if phase == "guard" and self._guard_at is not None:
            lines.append(f"guard: {self._guard_at.query}")
        if isinstance(exc, pgerrors.QueryCanceled) and "statement timeout" in primary:
            lines.append(
                f"statement_timeout is {self.config.statement_timeout_ms} ms (--statement-timeout)"
            )
        if phase == "body" and pos:
            p = line_col(f.text, (offset or 0) + int(pos) - 1)
            lines.extend(excerpt(f.text, p.line, column=p.column))
        elif phase == "lock" and step.directives.locks:
            line, column = _lock_position(step, diag.message_primary or "")
            lines.extend(excerpt(f.text, line, context=0, column=column))
        elif phase == "bookkeeping":
            lines.append(
                "the error came at COMMIT (e.g. a deferred constraint) or while recording the step"
            )
        return lines

    def _unencodable(self, text: str, start: int = 0) -> int | None:
        """Where ``text`` (from ``start``) first has a character the database's encoding
        lacks (22P05 names the bytes, not the place), or None."""
        codec = self.tracker.codec
        if codec is None:
            return None
        try:
            text[start:].encode(codec)
        except UnicodeEncodeError as exc:
            return start + exc.start
        except LookupError:
            return None
        return None

    # ---- non-transactional steps (SPEC §6) ---------------------------------------

    def _no_tx_guard_stopped(
        self,
        step: Step,
        stop: KeyboardInterrupt | SystemExit | int,
        t0: float,
    ) -> Interrupted:
        self._rollback()
        return self._interrupted(
            step, stop, t0, then="; the guard was cancelled and nothing was changed"
        )

    def _guard_lines(self, step: Step, exc: psycopg.Error) -> list[str]:
        """Where a guard that did not answer is, and what it asked (file:line, query)."""
        diag = exc.diag
        g = self._guard_at
        where = f"{step.file.path}:{g.line}" if g is not None else str(step.file.path)
        lines = [f"{where}: {diag.sqlstate} {' '.join((diag.message_primary or '').split())}"]
        if g is not None:
            lines.append(f"guard: {g.query}")
        return lines

    def _no_tx_guards(self, step: Step, t0: float) -> list[GuardResult]:
        """A no-transaction step's guards, in their own read-only transaction (SPEC §6).
        A lock timeout is retried and Ctrl-C recorded as in a transactional step."""
        attempt = 0
        while True:
            try:
                self._check_signal()
                self.conn.execute("BEGIN READ ONLY; " + self.timeouts_sql())
                try:
                    results = []
                    for g in step.directives.guards:
                        self._guard_at = g
                        results.append(self._eval_guard(g))
                        self._check_signal()
                    return results
                finally:
                    self._rollback()
            except pgerrors.LockNotAvailable as exc:
                if self._signal is not None:
                    code = self._signal_code()
                    raise self._no_tx_guard_stopped(step, code, t0) from None
                attempt += 1
                self._wait_to_retry(step, exc, attempt, t0)
            except (KeyboardInterrupt, SystemExit) as exc:
                raise self._no_tx_guard_stopped(step, exc, t0) from None
            except _Stop:
                raise self._no_tx_guard_stopped(step, self._signal_code(), t0) from None
            except pgerrors.QueryCanceled as exc:
                if self._signal is not None:
                    code = self._signal_code()
                    raise self._no_tx_guard_stopped(step, code, t0) from None
                # Cancelled from elsewhere (pg_cancel_backend): a failed step, as in a
                # transactional step; a statement timeout was a refusal already.
                msg = f"its guard was cancelled: {exc.diag.message_primary or exc}"
                self._record_failure(step, "failed", t0, msg)
                raise StepFailed(
                    f"{step.direction} {step.version} ({step.migration.name}) failed before it "
                    f"started: {msg}; nothing was changed",
                    details=self._guard_lines(step, exc),
                    version=step.version,
                ) from None
            except psycopg.Error as exc:
                if not (self.conn.broken or self.conn.closed or _lost_session(exc)):
                    raise
                other = self._other_connection()
                if other is not None:  # the failed step's history row, as for any step
                    try:
                        msg = "connection lost while its guards ran"
                        self._record_failure(step, "failed", t0, msg, conn=other)
                    finally:
                        other.close()
                raise StepFailed(
                    f"{step.direction} {step.version} ({step.migration.name}) failed before it "
                    "started: the connection was lost while its guards ran; nothing was changed",
                    details=[
                        f"{step.file.path}: {str(exc).strip()}",
                        "run the command again once the database is reachable"
                        + ("" if other is not None else " (the history lacks this step's row)"),
                    ],
                    version=step.version,
                ) from None

    def _run_no_tx(self, step: Step) -> StepResult:
        """SPEC §6, in its order: guards (own read-only transaction), the dirty mark,
        the statements one by one in autocommit, the end record; any stop after the
        mark leaves the version dirty and says exactly how far it got."""
        t0 = time.monotonic()
        statements = self._no_tx_statements(step)
        if step.directives.guards:
            for g in self._no_tx_guards(step, t0):
                if not g.passed:
                    raise self._refused(step, g, t0)
        if self._signal is not None:
            raise self._interrupted(step, self._signal_code(), t0, then="; nothing of it was run")
        run = _NoTxRun(step, statements, self._mark_dirty(step, statements, t0), t0)
        if self._signal is not None and self._undo_dirty(step, run.hist_id, t0):
            raise Interrupted(
                f"interrupted before non-transactional {step.direction} {step.version} "
                f"({step.migration.name}) ran its first statement; nothing of it was run",
                exit_code=self._signal_code(),
            )
        try:
            self._run_statements(run)
            duration = self._record_end(run)
        except (KeyboardInterrupt, SystemExit, psycopg.Error, _Stop) as exc:
            end_checked = False
            if (
                len(run.done) == len(statements)
                and isinstance(exc, psycopg.Error)
                and self._signal is None
                and (self.conn.broken or self.conn.closed)
            ):
                # Every statement ran and the end record's COMMIT may have run: ask.
                finished, end_checked = self._lost_at_the_end(step, exc, t0)
                if finished is not None:
                    return finished
            raise self._stopped_part_way(run, exc, end_checked) from None
        # As after a transactional step: the next step starts from the session's defaults.
        try:
            self.conn.execute(self._reset_sql())
        except psycopg.Error:
            self._committed_before_reset_failed()
        return StepResult(
            step.version, step.migration.name, step.direction, "ok", duration, run.retried()
        )

    @staticmethod
    def _no_tx_statements(step: Step) -> list[Statement]:
        """The file's statements; one PostgreSQL cannot parse is a layout error, as
        nothing ran yet."""
        from vezamig.sqltext import SqlSyntaxError, excerpt, split_statements

        f = step.file
        try:
            return split_statements(f.text)
        except SqlSyntaxError as exc:
            raise LayoutError(
                f"{step.direction} {step.version} ({step.migration.name}) not started: "
                f"{f.path}:{exc.line}:{exc.column}: {exc.message}",
                details=[
                    *excerpt(f.text, exc.line, column=exc.column),
                    "`vezamig verify` checks every file without a database",
                ],
            ) from None

    def _mark_dirty(self, step: Step, statements: list[Statement], t0: float) -> int:
        """Record the version dirty, with a history row that tells the truth if the
        process dies now; the history row's id, which progress updates.

        _sent: each message as it goes, so that after a lost connection the session,
        if it lives on (a COMMIT waiting for a standby), is found and ended before its
        record is read (_committed_on). Under --lock-timeout, retried as a step is:
        another session's lock on the tracking tables must not hold the run up without
        a word.
        """
        f = step.file
        first = (
            self.tracker.record_sql(
                step.version, step.migration.name, step.migration.checksum, 0, dirty=True
            )
            if step.direction == "up"
            else self.tracker.set_dirty_sql(step.version, True)
        )
        hist = self._history(
            step, "failed", _server_time_at(t0), 0, _progress(f.path, statements, 0)
        )
        attempt = 0
        try:
            one = self.tracker.exactly_one
            while True:
                try:
                    self._sent = (
                        f"BEGIN; {self._lock_sql()}; "
                        f"{self._end_probe(step)}; {one(first, self.tracker.label)}"
                    )
                    self.conn.execute(self._sent)
                    self._sent = one(hist, self.tracker.history_label, "id")
                    row = self.conn.execute(self._sent).fetchone()
                    self._sent = "COMMIT"
                    self.conn.execute(self._sent)
                    break
                except pgerrors.LockNotAvailable as exc:
                    self._rollback()
                    if self._signal is not None:
                        raise
                    attempt += 1
                    self._wait_to_retry(step, exc, attempt, t0)
        except psycopg.Error as exc:
            self._rollback()
            if self._signal is None and (self.conn.broken or self.conn.closed):
                said = _progress(f.path, statements, 0)
                raise self._lost_marking_dirty(step, exc, t0, said) from None
            if self._signal is None:
                raise self._mark_refused(step, exc, t0) from None
            code = self._signal_code()
            raise self._interrupted(step, code, t0, then="; nothing of it was run") from None
        except BaseException:
            self._rollback()
            raise
        assert row is not None
        return int(row[0])

    def _run_statements(self, run: _NoTxRun) -> None:
        """Each statement in autocommit, its progress recorded after it (best effort:
        the end record, or the failure's, writes the whole truth)."""
        step, f = run.step, run.step.file
        self.conn.execute(
            sql.SQL("SET statement_timeout = {}")
            .format(sql.Literal(f"{self.config.statement_timeout_ms}ms"))
            .as_string(self.conn)
        )
        lock_timeout: int | None = None
        try:
            for st in run.statements:
                # --lock-timeout as in a transactional step, but none for CONCURRENTLY
                # statements: they wait for older transactions, blocking nobody.
                wanted = 0 if _waits_for_others(st) else self.config.lock_timeout_ms
                if wanted != lock_timeout:
                    self.conn.execute(f"SET lock_timeout = '{int(wanted)}ms'")
                    lock_timeout = wanted
                run.attempts = 1
                while True:
                    self._check_signal()  # between statements: stop before the next one
                    try:
                        self.conn.execute(st.text)
                        break
                    except pgerrors.LockNotAvailable as exc:
                        # One statement, in autocommit: rolled back; retried as a step is.
                        self._pause_or_give_up(step, exc, run.attempts, f"at {f.path}:{st.line}")
                        run.attempts += 1
                        run.retries += 1
                run.done.append(st)
                self._update_history(
                    run.hist_id,
                    "failed",
                    _ms_since(run.t0),
                    _progress(f.path, run.statements, len(run.done)),
                )
        finally:
            if not self.conn.closed and not self.conn.broken:
                self.conn.execute("RESET statement_timeout; RESET lock_timeout")

    def _record_end(self, run: _NoTxRun) -> int:
        """Every statement ran: mark the version clean (up) or delete its row (down),
        and complete the history row; the step's duration."""
        step, total = run.step, len(run.statements)
        duration = _ms_since(run.t0)
        finish = (
            self.tracker.clean_sql(step.version, duration)
            if step.direction == "up"
            else self.tracker.unrecord_sql(step.version)
        )
        # READ WRITE: a statement may have made the session's transactions read-only.
        end = (
            sql.SQL("BEGIN READ WRITE; {}; {}; {}; COMMIT")
            .format(
                sql.SQL(_BEFORE_BOOKKEEPING),
                sql.SQL(self.tracker.exactly_one(finish, self.tracker.label)),
                sql.SQL(
                    self.tracker.exactly_one(
                        self._history_update_sql(
                            run.hist_id,
                            "ok",
                            duration,
                            f"{total} of {total} statements ran"
                            + (f" ({run.retried()})" if run.retries else ""),
                        ),
                        self.tracker.history_label,
                    )
                ),
            )
            .as_string(self.conn)
        )
        # Under --lock-timeout, retried as a statement is: a lock another session
        # holds on the tracking tables must not hold a finished step up without a word.
        self._sent = end.replace("BEGIN READ WRITE; ", f"BEGIN READ WRITE; {self._lock_sql()}; ", 1)
        run.attempts = 1
        try:
            while True:
                try:
                    self.conn.execute(self._sent)
                    break
                except pgerrors.LockNotAvailable as exc:
                    self._rollback()
                    self._pause_or_give_up(step, exc, run.attempts, "recording the end of the step")
                    run.attempts += 1
                    run.retries += 1
        except pgerrors.QueryCanceled:
            if self._signal is None:
                raise
            # Our own cancel hit the step's end: every statement ran, so record it
            # (then the run stops), rather than leave a finished step dirty.
            self._rollback()
            self.conn.execute(self._stopping_write(end))
        return duration

    def _stopped_part_way(
        self, run: _NoTxRun, exc: BaseException, end_checked: bool
    ) -> VezamigError:
        """The error for a non-transactional step stopped after its dirty mark: the
        version stays dirty, and the history row and the message say exactly how far
        it got and how to resolve it. ``end_checked``: a lost connection's end record
        was checked, on a new connection, and had not committed."""
        from vezamig.sqltext import excerpt

        self._rollback()
        step, f, statements, attempts = run.step, run.step.file, run.statements, run.attempts
        # Our own cancel (_signals_cancel) is an interruption, not a failed statement;
        # _Stop: the signal came between statements, none was running.
        ours = self._signal is not None and isinstance(exc, pgerrors.QueryCanceled | _Stop)
        failed = isinstance(exc, psycopg.Error) and not ours
        locked = failed and isinstance(exc, pgerrors.LockNotAvailable)
        verb = (
            f"gave up on a lock after {attempts} attempt(s)"
            if locked
            else "failed"
            if failed
            else "failed (interrupted)"
        )
        n, total = len(run.done), len(statements)
        between = isinstance(exc, _Stop)
        current = statements[n] if n < total and not between else None

        def at(s: Statement) -> str:
            return f"{f.path}:{s.line}"

        ran = _statement_list(f.path, run.done)
        not_run = _statement_list(f.path, statements[n if between else n + 1 :])
        what = (
            f"statement {n + 1} of {total} {verb} at {at(current)}"
            if current
            else f"interrupted between statements, after {n} of {total}"
            if between
            else f"all {total} statements ran; recording the end of the step {verb}"
        )
        hint = self._unfinished(current, exc) if current is not None else None
        said = f"{what}; ran: {ran}; not run: {not_run}" + (f" ({hint})" if hint else "")
        unsaid = self._update_history(run.hist_id, "failed", _ms_since(run.t0), said)
        if unsaid is not None:
            # What the next run quotes about the dirty version: say it is behind.
            self.reporter.info(
                f"warning: the history row of {step.direction} {step.version} could not "
                f"be updated ({unsaid}): it may say fewer statements ran than did"
            )
        details: list[str] = []
        if failed and (self.conn.broken or self.conn.closed):
            details += [
                f"{at(current) if current else f.path}: connection lost: {str(exc).strip()}",
                "whether the running statement finished is unknown: check the "
                "database; the history keeps the last progress it could record"
                if current
                else "the end of the step did not commit (checked on a new connection)"
                if end_checked
                else "the server could not be reached to check whether the end of the "
                "step was recorded: it still shows as dirty; `vezamig status` tells once "
                "the database is back",
            ]
        elif isinstance(exc, psycopg.Error) and current is not None:
            details += self._explain(step, exc, "body", offset=current.start)
            # 22P05: _explain placed it at the character (or nowhere).
            if not exc.diag.statement_position and exc.diag.sqlstate != "22P05":
                details += excerpt(f.text, current.line)  # no position: show the start
        elif isinstance(exc, psycopg.Error):
            details += self._explain(step, exc, "bookkeeping")
        v = step.version
        applied = f"`{self.config.command(f'repair --applied {v}')}`"
        rolled_back = f"`{self.config.command(f'repair --rolled-back {v}')}`"
        resolve = (
            f"{applied} if you finished the step by hand, or {rolled_back} if you undid it"
            if step.direction == "up"
            else f"{rolled_back} if you finished the rollback by hand, or {applied} if you "
            "undid it (the version stays applied)"
        )
        details += [
            f"statements that ran: {ran}",
            (
                f"statement that {verb}: {n + 1} of {total} at {at(current)}"
                if current
                else "no statement was running: the run stopped before the next one"
                if between
                else f"every statement ran; recording the end of the step {verb}"
            ),
            f"statements not run: {not_run}",
            *([hint] if hint else []),
            f"version {v} is now dirty: check the database, then run {resolve}",
        ]
        if locked:
            return LockBusy(
                f"{step.direction} {v} ({step.migration.name}) gave up part-way "
                f"(non-transactional): lock timeout ({self.config.lock_timeout_ms} ms) "
                f"after {attempts} attempt(s)",
                details=[
                    *details,
                    "another session holds a lock "
                    + ("this statement needs" if current else "on the tracking tables")
                    + "; find it with pg_locks/pg_stat_activity, or raise --lock-timeout "
                    "or --lock-retries",
                ],
            )
        if failed:
            return StepFailed(
                f"{step.direction} {v} ({step.migration.name}) failed part-way (non-transactional)",
                details=details,
                version=v,
            )
        code = (
            self._signal_code()
            if ours or not isinstance(exc, KeyboardInterrupt | SystemExit)
            else stop_code(exc)
        )
        stopped = (
            "it stopped between statements" if between else "the running statement was cancelled"
        )
        interrupted = Interrupted(
            f"interrupted during non-transactional {step.direction} {v} "
            f"({step.migration.name}); {stopped}; it is now dirty",
            exit_code=code,
        )
        interrupted.details = [*interrupted.details, *details]
        return interrupted

    def _end_probe(self, step: Step) -> str:
        """The writes that a no-transaction step's progress and end will need, each
        made to touch no row (``AND false``): the same statements, so the same table
        and column privileges are checked now, before its first statement runs, and
        not after its last (a role with INSERT but no UPDATE on the history would
        otherwise run every statement and then leave the step dirty)."""
        end = (
            self.tracker.clean_sql(step.version, 0)
            if step.direction == "up"
            else self.tracker.unrecord_sql(step.version)
        )
        history = self._history_update_sql(0, "ok", 0, "")
        return "; ".join(f"{q.as_string(self.conn)} AND false" for q in (end, history))

    def _mark_refused(self, step: Step, exc: psycopg.Error, t0: float) -> VezamigError:
        """The database refused to record a no-transaction step as dirty (a revoked
        privilege, a trigger that raises): nothing of it ran, the mark rolled back."""
        what = f"{step.direction} {step.version} ({step.migration.name})"
        message = (exc.diag.message_primary or str(exc)).strip()
        if isinstance(exc, pgerrors.InsufficientPrivilege):
            return UsageError(
                f"{what} was not started: the database role may not write vezamig's "
                f"tracking tables ({message}); nothing of it was run",
                details=[
                    grant_hint(self.tracker.label, self.tracker.history_label, self.conn.info.user)
                ],
            )
        skipped = skipped_bookkeeping(exc)
        lines = [skipped] if skipped is not None else error_lines(exc)
        self._record_failure(
            step, "failed", t0, f"not started: recording it dirty failed: {lines[0]}"
        )
        return StepFailed(
            f"{what} failed before its first statement: the database refused to record it "
            "as dirty; nothing of it was run",
            details=lines,
            version=step.version,
        )

    def _lost_marking_dirty(
        self, step: Step, exc: psycopg.Error, t0: float, said: str
    ) -> VezamigError:
        """The connection broke while a no-transaction step was recorded dirty, before
        its first statement (statements are sent only once that record commits): say
        whether the record committed, asked on a new connection, and how to resolve it."""
        head = f"{step.direction} {step.version} ({step.migration.name})"
        where = f"{step.file.path}: connection lost: {str(exc).strip()}"
        other = self._other_connection()
        marked = None
        try:
            if other is not None:
                marked = self._committed_on(other, step, lambda recorded, dirty: dirty)
                nothing = "connection lost before its first statement; nothing of it ran"
                if marked is False:
                    self._record_failure(step, "failed", t0, nothing, conn=other)
                elif marked:
                    # The row written with the dirty mark expects a statement to be running.
                    with suppress(psycopg.Error):
                        retell = self._retell_sql(other, step, said, nothing)
                        other.execute(
                            self._stopping_write(f"BEGIN READ WRITE; {retell}; COMMIT", lost=True)
                        )
        finally:
            if other is not None:
                other.close()
        v = step.version
        undo = "rolled-back" if step.direction == "up" else "applied"
        if marked is False:
            return StepFailed(
                f"{head} failed before it started: the connection was lost while it was "
                "being recorded as started; nothing was changed (checked on a new connection)",
                details=[where, "run the command again"],
                version=v,
            )
        resolve = f"`{self.config.command(f'repair --{undo} {v}')}`"
        if marked:
            return StepFailed(
                f"{head} failed before its first statement: the connection was lost just "
                "after it was recorded as started (dirty); none of its statements ran",
                details=[
                    where,
                    "statements that ran: none (they are sent only once that record commits)",
                    f"version {v} is now dirty: resolve it with {resolve}, then run the "
                    "command again",
                ],
                version=v,
            )
        return ConnectError(
            f"lost the database connection while {head} was being recorded as started; "
            "none of its statements ran, and whether it was recorded dirty is not known: "
            "the server cannot be reached to check",
            details=[
                where,
                f"run `vezamig status` once the database is back: if {v} shows as dirty, "
                f"resolve it with {resolve}",
            ],
        )

    def _retell_sql(self, conn: Connection, step: Step, was: str, now: str) -> str:
        """The latest failed history row of this step that still says ``was``: now ``now``."""
        h = self.tracker.history
        return (
            sql.SQL(
                "UPDATE {} SET message = {} WHERE id = (SELECT max(id) FROM {} WHERE version = "
                "{} AND direction = {} AND outcome = 'failed' AND message = {})"
            )
            .format(
                h,
                sql.Literal(os_text(now)),
                h,
                sql.Literal(step.version),
                sql.Literal(step.direction),
                sql.Literal(os_text(was)),
            )
            .as_string(conn)
        )

    def _lost_at_the_end(
        self, step: Step, exc: psycopg.Error, t0: float
    ) -> tuple[StepResult | None, bool]:
        """Every statement of a no-transaction step ran and the connection broke while its
        end was recorded: if that record committed (asked on a new connection), the step
        is done and the run stops after it; else None (it stays dirty, said as such).
        The flag: whether a new connection could tell."""
        up = step.direction == "up"
        other = self._other_connection()
        if other is None:
            return None, False
        try:
            ended = self._committed_on(
                other, step, lambda recorded, dirty: recorded and not dirty if up else not recorded
            )
        finally:
            other.close()
        if not ended:
            return None, ended is not None
        head = f"{step.direction} {step.version} ({step.migration.name})"
        self._stop_after = ConnectError(
            f"lost the database connection after {head} was recorded finished: it is "
            f"{'applied' if up else 'rolled back'} (checked on a new connection); no later "
            "step was run",
            details=[
                f"{step.file.path}: connection lost: {str(exc).strip()}",
                "run the command again once the database is reachable",
            ],
        )
        return (
            StepResult(step.version, step.migration.name, step.direction, "ok", _ms_since(t0)),
            True,
        )

    def _unfinished(self, statement: Statement, exc: BaseException) -> str | None:
        """The hint for a CONCURRENTLY statement that stopped, from the catalog when it
        can be read: an index of its name that is valid (there before, so the
        statement failed with "already exists") or absent is no leftover to drop."""
        found = _concurrent_index(statement)
        if found is None or found[1] is None or self.conn.closed or self.conn.broken:
            return _unfinished_hint(found)
        if not isinstance(exc, psycopg.Error):  # a stop: the statement may still be running
            return _unfinished_hint(found)
        if found[0] == "drop":
            return self._unfinished_drop(found)
        # In its table's schema, resolved as the statement resolved it (the file's
        # search_path is still the session's): the name as written could lead to a
        # valid index of that name elsewhere.
        query = sql.SQL(
            "SELECT i.indisvalid, pg_catalog.format('%I.%I', n.nspname, c.relname)"
            " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
            " ON n.oid = c.relnamespace JOIN pg_catalog.pg_index i"
            " ON i.indexrelid = c.oid WHERE c.relname = {} AND c.relnamespace ="
            " (SELECT t.relnamespace FROM pg_catalog.pg_class t"
            " WHERE t.oid = pg_catalog.to_regclass({}))"
        ).format(sql.Literal(found[2]), sql.Literal(found[3]))
        return self._invalid_left(found, query)

    def _unfinished_drop(self, found: tuple[str, str | None, str, str]) -> str | None:
        """A DROP INDEX CONCURRENTLY that stopped: its index, as the statement resolved
        it (the file's search_path is still the session's), INVALID now, or gone or
        valid (nothing left to finish)."""
        # Named with its schema whatever the search_path: the hint is pasted elsewhere.
        query = sql.SQL(
            "SELECT i.indisvalid, pg_catalog.format('%I.%I', n.nspname, c.relname)"
            " FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE i.indexrelid = pg_catalog.to_regclass({})"
        ).format(sql.Literal(found[1]))
        return self._invalid_left(found, query)

    def _invalid_left(
        self, found: tuple[str, str | None, str, str], query: sql.Composed
    ) -> str | None:
        """The hint for the index ``query`` answers (valid, name) for: none when it is
        valid or absent; the generic hint when the catalog cannot be read."""
        try:
            row = self.conn.execute(query).fetchone()
        except psycopg.Error:
            self._rollback()
            return _unfinished_hint(found)
        self._rollback()
        if row is None or row[0]:
            return None
        return _unfinished_hint(found, left_invalid=str(row[1]))

    def _pause_or_give_up(
        self, step: Step, exc: pgerrors.LockNotAvailable, attempts: int, where: str
    ) -> None:
        """A no-transaction statement, or its step's end, hit --lock-timeout: pause
        before the next attempt, or re-raise ``exc`` once the retries are spent or a
        stop signal came."""
        if attempts > self.config.lock_retries or self._signal is not None:
            raise exc
        pause = retry_pause(attempts)
        self.reporter.info(
            f"{step.version}: lock timeout {where} ({exc.diag.message_primary}); retry "
            f"{attempts}/{self.config.lock_retries} in {pause:g}s"
        )
        self._pause(pause)

    def _lock_sql(self) -> str:
        return f"SET LOCAL lock_timeout = '{int(self.config.lock_timeout_ms)}ms'"

    def _pause(self, seconds: float) -> None:
        """Sleep, in slices: a stop signal only marks the run (_signals_cancel)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._signal is not None:
                raise _Stop
            time.sleep(min(left, 0.05))

    def _undo_dirty(self, step: Step, hist_id: int, t0: float) -> bool:
        """A stop signal came while the step was being recorded dirty, before its first
        statement: undo that record (nothing ran), so no repair is needed. False if it
        cannot be undone; the step then stops as dirty, saying nothing ran."""
        undo = (
            self.tracker.unrecord_sql(step.version)
            if step.direction == "up"
            else self.tracker.set_dirty_sql(step.version, False)
        )
        note = self._history_update_sql(
            hist_id, "failed", _ms_since(t0), "interrupted before its first statement; nothing ran"
        )
        try:
            self.conn.execute(
                self._stopping_write(
                    sql.SQL("BEGIN READ WRITE; {}; {}; COMMIT")
                    .format(undo, note)
                    .as_string(self.conn)
                )
            )
        except psycopg.Error:
            self._rollback()
            return False
        except (KeyboardInterrupt, SystemExit):
            # A second signal: psycopg let the COMMIT finish or fail; the row says which.
            self._rollback()
            try:
                recorded, dirty = self._row_of(self.conn, step.version)
            except psycopg.Error:
                self._rollback()
                return False
            return not recorded if step.direction == "up" else recorded and not dirty
        return True

    def _history_update_sql(
        self, hist_id: int, outcome: str, duration_ms: int, message: str
    ) -> sql.Composed:
        return sql.SQL(
            "UPDATE {} SET outcome = {}, duration_ms = {}, message = {} WHERE id = {}"
        ).format(
            self.tracker.history,
            sql.Literal(outcome),
            sql.Literal(duration_ms),
            sql.Literal(self.tracker.storable(os_text(message))),  # a path's odd bytes
            sql.Literal(hist_id),
        )

    def _update_history(
        self, hist_id: int, outcome: str, duration_ms: int, message: str
    ) -> str | None:
        """None once written; else why not (the caller says so, once)."""
        if self.conn.closed or self.conn.broken:
            return None  # the step's own message says the connection was lost
        # Progress is best effort: the step goes on, and a second stop signal here must
        # not hide the message that says how far the step got.
        failed: str | None = None
        try:
            update = self._history_update_sql(hist_id, outcome, duration_ms, message)
            # As the user who connected, whatever role the statements switched to; READ
            # WRITE whatever transaction mode they set for the session; under
            # --lock-timeout, not the session's (0 after a CONCURRENTLY statement).
            script = f"{_AS_SESSION_USER}; {update.as_string(self.conn)}"
            self.conn.execute(
                self._stopping_write(f"BEGIN READ WRITE; {script}; COMMIT")
                if self._signal is not None
                else f"BEGIN READ WRITE; {self._lock_sql()}; {script}; COMMIT"
            )
        except psycopg.Error as exc:
            failed = (exc.diag.message_primary or str(exc)).strip()
        except (KeyboardInterrupt, SystemExit):
            failed = "a second stop signal came while it was written"
        self._rollback()  # a failed update leaves the transaction open
        return failed

    def _stopping_write(self, script: str, *, lost: bool = False) -> str:
        """Bookkeeping written after a stop signal, or on a new connection after the
        run's own was lost (``lost``), must not hold the stop up: it commits without
        waiting for a synchronous standby (`synchronous_commit = local`, still durable
        here; one that never answers would wait for ever), and gives up on a lock after
        2 s (the step's own message then says what happened, with a warning that the
        audit log lacks the row)."""
        if self._signal is None and not lost:
            return script
        body = script.removeprefix("BEGIN READ WRITE; ").removesuffix("; COMMIT")
        return (
            "BEGIN READ WRITE; SET LOCAL synchronous_commit = local; "
            f"SET LOCAL lock_timeout = '2s'; {body}; COMMIT"
        )
