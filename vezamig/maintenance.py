"""baseline and repair: change what the tracking table believes, never the schema.

Both run under the run lock, write one history row per version they touch,
and refuse when the database is not in the state they resolve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from vezamig.db import error_lines
from vezamig.errors import Interrupted, LockBusy, Refused, StepFailed, UsageError
from vezamig.plan import DIRTY, MODIFIED, StatusRow
from vezamig.runner import Runner


@dataclass(frozen=True)
class Change:
    version: int
    name: str
    action: str  # human words: "record as applied", "mark clean", …

    def __str__(self) -> str:
        return f"{self.version} {self.name}: {self.action}"


def plan_baseline(runner: Runner, version: int) -> list[Change]:
    applied = runner.applied()
    if applied:
        listed = ", ".join(str(v) for v in list(applied)[:10])
        raise Refused(
            f"baseline refused: {len(applied)} version(s) already recorded in "
            f"{runner.config.table_label} ({listed}{'…' if len(applied) > 10 else ''})",
            details=[
                "baseline only adopts a database with no vezamig records; use "
                "`vezamig status` to see them"
            ],
        )
    known = {m.version for m in runner.migrations}
    if version not in known:
        raise UsageError(
            f"--version {version}: no up file has that version; give the last "
            "version whose changes the database already has"
        )
    return [
        Change(m.version, m.name, "record as applied (baseline, not run)")
        for m in runner.migrations
        if m.version <= version
    ]


def apply_baseline(runner: Runner, changes: list[Change]) -> None:
    by_version = {m.version: m for m in runner.migrations}
    runner.check_writable()
    runner.tracker.ensure()
    stmts: list[sql.Composable] = []
    for c in changes:
        m = by_version[c.version]
        stmts.append(runner.tracker.record_sql(m.version, m.name, m.checksum, 0))
        stmts.append(
            runner.tracker.history_sql(
                version=m.version,
                name=m.name,
                direction="baseline",
                outcome="ok",
                checksum=m.checksum,
                duration_ms=0,
                message="recorded as applied without running it (baseline)",
            )
        )
    _run(runner, stmts)


def _run(runner: Runner, stmts: list[sql.Composable]) -> None:
    """One transaction for all the rows, under the steps' --lock-timeout and
    --statement-timeout: another session's lock on the tracking tables is waited for
    as a step waits, retried with the same pauses, then exit 4 with nothing written."""
    from psycopg import errors as pgerrors

    from vezamig.runner import retry_pause, stop_code

    runner.check_writable()
    rows = sql.SQL("; ").join(stmts).as_string(runner.conn)
    message = f"BEGIN; {runner.timeouts_sql()}; {rows}; COMMIT"
    cfg = runner.config
    attempt = 0
    while True:
        try:
            runner.conn.execute(message)
            return
        except pgerrors.LockNotAvailable as exc:
            _rollback(runner)
            attempt += 1
            if attempt > cfg.lock_retries:
                raise LockBusy(
                    f"{cfg.application}: lock timeout ({cfg.lock_timeout_ms} ms) after {attempt} "
                    f"attempt(s): {exc.diag.message_primary}; nothing was recorded",
                    details=[
                        "another session holds a lock on the tracking tables; find it with "
                        "pg_locks/pg_stat_activity, or retry later / raise --lock-timeout "
                        "or --lock-retries"
                    ],
                ) from None
            runner.reporter.info(
                f"lock timeout ({exc.diag.message_primary}); nothing recorded, retry "
                f"{attempt}/{cfg.lock_retries} in {retry_pause(attempt):g}s"
            )
            try:
                time.sleep(retry_pause(attempt))
            except (KeyboardInterrupt, SystemExit) as stop:
                raise Interrupted(
                    f"{cfg.application}: interrupted while waiting to retry after a lock "
                    "timeout; nothing was recorded",
                    exit_code=stop_code(stop),
                ) from None
        except pgerrors.QueryCanceled as exc:  # --statement-timeout (a slow trigger)
            _rollback(runner)
            raise StepFailed(
                f"{cfg.application}: {exc.diag.message_primary} while writing the rows "
                f"(--statement-timeout {cfg.statement_timeout_ms} ms); it was rolled back, "
                "nothing was recorded"
            ) from None
        except (KeyboardInterrupt, SystemExit) as stop:
            _rollback(runner)
            raise Interrupted(
                f"{cfg.application}: interrupted while writing the rows; they were rolled "
                "back, nothing was recorded",
                exit_code=stop_code(stop),
            ) from None
        except pgerrors.InsufficientPrivilege:
            _rollback(runner)
            raise  # the CLI names the GRANT it needs
        except psycopg.Error as exc:
            if runner.conn.broken or runner.conn.closed:
                raise
            _rollback(runner)  # a trigger that raises, a constraint added by hand
            raise StepFailed(
                f"{cfg.application}: the database refused the rows; they were rolled back, "
                "nothing was recorded",
                details=error_lines(exc),
            ) from None
        except BaseException:
            _rollback(runner)
            raise


def _rollback(runner: Runner) -> None:
    if not runner.conn.closed and runner.conn.info.transaction_status != 0:
        runner.conn.execute("ROLLBACK")


def _last_message(runner: Runner, version: int) -> str:
    for row in runner.tracker.history_rows(limit=50):
        if row.version == version and row.message:
            return row.message
    return "no history message"


def plan_repair(
    runner: Runner,
    rows: list[StatusRow],
    *,
    checksums: bool,
    applied: int | None,
    rolled_back: int | None,
) -> list[Change]:
    by_version = {r.version: r for r in rows}
    if checksums:
        # A name that changed too is said: it may be another branch's file with the
        # same number, not an edit (the repair records the file's name).
        changes = [
            Change(
                r.version,
                r.name,
                f"re-record checksum {r.applied.checksum[:12]}… → {r.migration.checksum[:12]}…"
                + (
                    f", and the name {r.applied.name} → {r.migration.name}"
                    if r.applied.name != r.migration.name
                    else ""
                ),
            )
            for r in rows
            if r.state == MODIFIED and r.migration and r.applied
        ]
        return changes  # none: nothing to repair, like `up` with nothing pending
    version = applied if applied is not None else rolled_back
    assert version is not None
    row = by_version.get(version)
    if row is None or row.state != DIRTY:
        state = row.state if row else "unknown"
        raise Refused(
            f"repair refused: version {version} is {state}, not dirty; --applied and "
            "--rolled-back only resolve a dirty version (see `vezamig status`)"
        )
    why = _last_message(runner, version)
    if applied is not None:
        return [Change(version, row.name, f"mark as applied (clean); last known: {why}")]
    return [Change(version, row.name, f"mark as rolled back (remove); last known: {why}")]


def apply_repair(
    runner: Runner, changes: list[Change], *, checksums: bool, rolled_back: bool
) -> None:
    by_version = {m.version: m for m in runner.migrations}
    applied_rows = runner.applied()
    t = runner.tracker
    stmts: list[sql.Composable] = []
    for c in changes:
        m = by_version.get(c.version)
        a = applied_rows[c.version]
        checksum = m.checksum if m is not None else a.checksum
        if checksums:
            assert m is not None
            stmts.append(t.update_checksum_sql(c.version, m.checksum, m.name))
            msg = f"checksum re-recorded: {a.checksum} -> {m.checksum}"
            if a.name != m.name:
                msg += f"; name re-recorded: {a.name} -> {m.name}"
        elif rolled_back:
            stmts.append(t.unrecord_sql(c.version))
            msg = "dirty version resolved as rolled back by the operator"
        else:
            stmts.append(t.set_dirty_sql(c.version, False))
            msg = "dirty version resolved as applied by the operator"
        stmts.append(
            t.history_sql(
                version=c.version,
                name=c.name,
                direction="repair",
                outcome="ok",
                checksum=checksum,
                duration_ms=0,
                message=msg,
            )
        )
    _run(runner, stmts)
