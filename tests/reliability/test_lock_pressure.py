"""A long transaction holds a lock a step needs: give up cleanly, retry, never queue everyone.

An ``ALTER TABLE`` waiting for its ACCESS EXCLUSIVE lock makes every later query
on that table queue behind it. ``--lock-timeout`` bounds that wait; the step is
rolled back and retried after growing pauses (the pgroll / GitLab approach).
The proof that other sessions are not blocked for longer than the lock
timeout is made by the server: the probing session's own ``lock_timeout``
(several times vezamig's) would cancel its query if it queued any longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vezamig.cluster import ThrowawayCluster

from .support import (
    Running,
    execute,
    history,
    query,
    recorded,
    run_cli,
    start_cli,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.reliability

VEZAMIG_LOCK_TIMEOUT = "500ms"
PROBE_LOCK_TIMEOUT = "3s"  # six times vezamig's


@pytest.fixture
def tracks(dsn: str) -> str:
    query(dsn, "CREATE TABLE tracks (id int PRIMARY KEY); INSERT INTO tracks VALUES (1), (2)")
    return dsn


@pytest.fixture
def blocker(tracks: str) -> Iterator[psycopg.Connection[Any]]:
    """A long read transaction: its ACCESS SHARE lock conflicts with any ALTER TABLE."""
    with psycopg.connect(tracks) as conn:
        conn.execute("SELECT count(*) FROM tracks")
        yield conn
        conn.rollback()


def waiting_for_lock(dsn: str) -> bool:
    rows = query(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
        " 'vezamig up' AND wait_event_type = 'Lock'",
    )
    return bool(rows[0][0])


def probe(dsn: str) -> int:
    """Another application's query on the table, which gives up after PROBE_LOCK_TIMEOUT."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{PROBE_LOCK_TIMEOUT}'")
        row = conn.execute("SELECT count(*) FROM tracks").fetchone()
        assert row is not None
        return int(row[0])


def probe_while_vezamig_waits(dsn: str, run: Running) -> int:
    """Probe once during each of vezamig's lock waits; return how many probes ran."""
    probes = 0
    while run.proc.poll() is None:
        wait_for(
            lambda: waiting_for_lock(dsn) or run.proc.poll() is not None,
            timeout=60,
            what="vezamig to wait for its lock (or to finish)",
        )
        if run.proc.poll() is not None:
            break
        assert probe(dsn) == 2  # queued behind vezamig's request, but not for long
        probes += 1
        wait_for(
            lambda: not waiting_for_lock(dsn),
            timeout=60,
            what="vezamig to stop waiting for its lock",
        )
    return probes


STEPS = {
    "alter": "ALTER TABLE tracks ADD COLUMN bpm int;\n",
    "lock directive": "-- vezamig:lock tracks\nALTER TABLE tracks ADD COLUMN bpm int;\n",
}


@pytest.mark.parametrize("body", STEPS.values(), ids=list(STEPS))
def test_a_step_that_cannot_get_its_lock_gives_up_after_retries_with_nothing_changed(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path, body: str
) -> None:
    write_tree(tree, {"up/001_bpm_up.sql": body})
    run = start_cli(
        [
            "up",
            "-d",
            tracks,
            "--dir",
            str(tree),
            "--lock-timeout",
            VEZAMIG_LOCK_TIMEOUT,
            "--lock-retries",
            "2",
        ]
    )

    probes = probe_while_vezamig_waits(tracks, run)
    result = run.wait()

    assert result.returncode == 4, result
    assert 1 <= probes <= 3  # at most one per attempt; none was blocked for long
    assert "retry 1/2 in 1s" in result.stderr and "retry 2/2 in 2s" in result.stderr
    assert "up 1 (bpm) gave up: lock timeout (500 ms) after 3 attempt(s)" in result.stderr
    assert "the step was rolled back" in result.stderr
    assert recorded(tracks) == []
    assert query(
        tracks,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'tracks' AND column_name = 'bpm'",
    ) == [(0,)]
    [row] = history(tracks)
    assert (row["version"], row["outcome"]) == (1, "failed")
    assert "lock timeout" in row["message"]
    # The long transaction that held the lock was never disturbed.
    assert blocker.execute("SELECT count(*) FROM tracks").fetchone() == (2,)


def test_a_step_succeeds_when_the_lock_frees_up_before_its_retries_run_out(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path
) -> None:
    write_tree(tree, {"up/001_bpm_up.sql": STEPS["alter"]})
    run = start_cli(
        [
            "up",
            "-d",
            tracks,
            "--dir",
            str(tree),
            "--lock-timeout",
            VEZAMIG_LOCK_TIMEOUT,
            "--lock-retries",
            "3",
        ]
    )
    wait_for(lambda: "retry 1/3" in run.output_so_far(), what="the first lock timeout")
    blocker.commit()  # the long transaction ends during vezamig's pause
    result = run.wait()

    assert result.returncode == 0, result
    assert "retry 2/3" not in result.output
    assert recorded(tracks) == [(1, False)]
    assert query(
        tracks,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'tracks' AND column_name = 'bpm'",
    ) == [(1,)]
    # A retried step has one history row, for its final outcome.
    assert [(h["version"], h["outcome"]) for h in history(tracks)] == [(1, "ok")]


def test_without_a_lock_timeout_other_sessions_would_queue_behind_the_step(
    tracks: str, blocker: psycopg.Connection[Any], tree: Path
) -> None:
    """The control experiment: the probe above does detect queueing when there is some."""
    write_tree(tree, {"up/001_bpm_up.sql": STEPS["alter"]})
    run = start_cli(["up", "-d", tracks, "--dir", str(tree), "--lock-timeout", "0"])
    wait_for(lambda: waiting_for_lock(tracks), what="vezamig to wait for its lock")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        probe(tracks)
    blocker.commit()
    result = run.wait()
    assert result.returncode == 0, result
    assert recorded(tracks) == [(1, False)]


# ---- the tracking tables locked by another session ------------------------------------

READS = {
    "status": ["status"],
    "status --json": ["status", "--json"],
    "history": ["history"],
    "up": ["up"],
    "down": ["down", "--yes"],
    "up --dry-run": ["up", "--dry-run"],
    "baseline": ["baseline", "--version", "2"],
    "repair": ["repair", "--checksums"],
}


@pytest.fixture
def one_applied(dsn: str, tree: Path) -> str:
    write_tree(
        tree,
        {
            "up/001_a_up.sql": "CREATE TABLE a (x int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
            "up/002_b_up.sql": "CREATE TABLE b (x int);\n",
        },
    )
    assert run_cli(["up", "--to", "1", "-d", dsn, "--dir", str(tree)]).returncode == 0
    return dsn


def locked_out(dsn: str, tree: Path, args: list[str], *extra: str) -> str:
    """Run ``args`` while the caller keeps a tracking table locked (so the test reads
    the database's state only after): exit 4, nothing on stdout; returns stderr."""
    result = run_cli(
        [*args, "-d", dsn, "--dir", str(tree), "--lock-timeout", "300ms", *extra], timeout=30
    )
    assert result.returncode == 4, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "(waited 0.3s, --lock-timeout); nothing was changed" in result.stderr
    return result.stderr


@pytest.mark.parametrize("args", READS.values(), ids=list(READS))
def test_a_tracking_table_locked_by_another_session_is_named_and_nothing_waits_forever(
    one_applied: str, tree: Path, args: list[str]
) -> None:
    table = "schema_migrations_history" if args == ["history"] else "schema_migrations"
    with psycopg.connect(one_applied) as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        pid = holder.info.backend_pid
        said = locked_out(one_applied, tree, args)
        holder.rollback()

    assert f"error: cannot read {table}: another session holds a lock on it" in said
    assert f"pid {pid} (application " in said
    assert "idle in transaction, in its transaction since " in said
    assert f"holds an ACCESS EXCLUSIVE lock on {table}" in said
    assert f"SELECT pg_terminate_backend({pid})" in said
    assert recorded(one_applied) == [(1, False)]
    assert [h["direction"] for h in history(one_applied)] == ["up"]
    assert query(one_applied, "SELECT to_regclass('b') IS NULL, to_regclass('a') IS NOT NULL") == [
        (True, True)
    ]


def test_a_read_queued_behind_a_waiting_exclusive_request_names_the_waiter(
    one_applied: str, tree: Path
) -> None:
    with psycopg.connect(one_applied) as reader, psycopg.connect(one_applied) as alter:
        reader.execute("SELECT count(*) FROM schema_migrations")  # holds ACCESS SHARE
        alter_pid = alter.info.backend_pid
        waiting = threading.Thread(
            target=lambda: alter.execute("ALTER TABLE schema_migrations ADD COLUMN note text")
        )
        waiting.start()
        wait_for(
            lambda: bool(query(one_applied, "SELECT 1 FROM pg_locks WHERE NOT granted")),
            what="the ALTER TABLE to queue",
        )
        said = locked_out(one_applied, tree, ["status"])
        reader.rollback()
        waiting.join(timeout=30)
        alter.rollback()

    assert f"pid {alter_pid} (application " in said
    assert "waits for an ACCESS EXCLUSIVE lock on schema_migrations" in said


def test_a_holder_whose_activity_is_hidden_from_the_role_is_still_named(
    one_applied: str, tree: Path
) -> None:
    execute(
        one_applied,
        "DROP ROLE IF EXISTS vz_lock_reader; CREATE ROLE vz_lock_reader LOGIN;"
        " GRANT SELECT ON schema_migrations, schema_migrations_history TO vz_lock_reader",
    )
    reader_dsn = f"{one_applied} user=vz_lock_reader"
    try:
        with psycopg.connect(one_applied) as holder:
            holder.execute("LOCK TABLE schema_migrations")
            said = locked_out(reader_dsn, tree, ["status"])
            holder.rollback()
    finally:
        execute(
            one_applied,
            "REVOKE ALL ON schema_migrations, schema_migrations_history FROM vz_lock_reader;"
            " DROP ROLE vz_lock_reader",
        )
    assert "what it is doing is not visible to you (that needs pg_read_all_stats)" in said


def test_a_prepared_transaction_holding_the_lock_is_named_as_one(
    pg_bindir: Path, tmp_path: Path
) -> None:
    with ThrowawayCluster(pg_bindir, settings={"max_prepared_transactions": "2"}) as cluster:
        dsn = cluster.conninfo()
        tree = write_tree(tmp_path / "sql", {"up/001_a_up.sql": "SELECT 1;\n"})
        assert run_cli(["up", "-d", dsn, "--dir", str(tree)]).returncode == 0
        execute(dsn, "BEGIN; LOCK TABLE schema_migrations; PREPARE TRANSACTION 'vz_held'")
        try:
            said = locked_out(dsn, tree, ["status"])
        finally:
            execute(dsn, "ROLLBACK PREPARED 'vz_held'")
    assert "a prepared transaction holds an ACCESS EXCLUSIVE lock on schema_migrations" in said
    assert "pg_terminate_backend" not in said


def status_waits(dsn: str, longer_than: str = "0", command: str = "status") -> bool:
    """Whether `vezamig status` (or ``command``) is waiting for a lock, for longer than
    ``longer_than``."""
    return bool(
        query(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock' AND now() - query_start > %s::interval",
            (f"vezamig {command}", longer_than),
        )
    )


def set_database_statement_timeout_50ms(dsn: str) -> None:
    """As a database's own setting for the application's queries would be."""
    execute(
        dsn,
        "DO $$BEGIN EXECUTE format("
        "'ALTER DATABASE %I SET statement_timeout = 50', current_database()); END$$",
    )


def test_with_no_lock_timeout_a_read_waits_for_the_lock(one_applied: str, tree: Path) -> None:
    with psycopg.connect(one_applied) as holder:
        holder.execute("LOCK TABLE schema_migrations")
        run = start_cli(["status", "-d", one_applied, "--dir", str(tree), "--lock-timeout", "0"])
        wait_for(lambda: status_waits(one_applied), what="status to wait for the lock")
        holder.rollback()
    result = run.wait()
    assert result.returncode == 0, result
    assert "applied" in result.stdout


def test_a_databases_own_statement_timeout_does_not_cancel_a_read_that_waits(
    one_applied: str, tree: Path
) -> None:
    """A statement_timeout set for the application's queries (ALTER DATABASE … SET) would
    cancel vezamig's read while it waits for the lock: its reads run under
    --statement-timeout (none by default), as its steps do."""
    set_database_statement_timeout_50ms(one_applied)
    with psycopg.connect(one_applied) as holder:
        holder.execute("LOCK TABLE schema_migrations")
        run = start_cli(["status", "-d", one_applied, "--dir", str(tree)])
        wait_for(
            lambda: status_waits(one_applied, longer_than="300ms"),
            what="status to wait for the lock longer than the database's statement_timeout",
        )
        holder.rollback()
    result = run.wait()
    assert result.returncode == 0, result
    assert "applied" in result.stdout


def test_a_databases_own_statement_timeout_does_not_cancel_creating_the_tracking_tables(
    dsn: str, tree: Path
) -> None:
    """The first `up` creates the tracking tables; another session creating the same
    name in an open transaction makes it wait, under --statement-timeout (none by
    default), not the database's 50 ms, which would have failed the run."""
    write_tree(tree, {"up/001_a_up.sql": "CREATE TABLE a (id int);\n"})
    set_database_statement_timeout_50ms(dsn)
    with psycopg.connect(dsn) as holder:
        holder.execute("CREATE TABLE schema_migrations (version bigint)")
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(
            lambda: status_waits(dsn, longer_than="300ms", command="up"),
            what="up's creation of the tracking tables to wait longer than 50 ms",
        )
        holder.rollback()
    result = run.wait()
    assert result.returncode == 0, result
    assert query(dsn, "SELECT version FROM schema_migrations") == [(1,)]
    assert query(dsn, "SELECT count(*) FROM schema_migrations_history") == [(1,)]


def test_creating_the_tracking_tables_gives_up_after_the_lock_timeout(dsn: str, tree: Path) -> None:
    """Another session creating the same name in a transaction left open: the first
    `up` waits --lock-timeout, then exit 4 with nothing created, not a silent hang."""
    write_tree(tree, {"up/001_a_up.sql": "CREATE TABLE a (id int);\n"})
    with psycopg.connect(dsn) as holder:
        holder.execute("CREATE TABLE schema_migrations (version bigint)")
        result = run_cli(["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "200ms"])
        holder.rollback()
    assert result.returncode == 4, result
    assert (
        "cannot create the tracking tables schema_migrations and schema_migrations_history: "
        "another session holds a lock this needs (waited 0.2s, --lock-timeout); nothing was "
        "changed"
    ) in result.stderr
    assert "then run the command again (--lock-timeout sets how long vezamig waits)" in (
        result.stderr
    )
    assert "Traceback" not in result.output
    assert query(
        dsn,
        "SELECT to_regclass('schema_migrations'), to_regclass('schema_migrations_history'),"
        " to_regclass('a')",
    ) == [(None, None, None)]


def test_a_lock_on_the_tracking_tables_index_is_named_too(one_applied: str, tree: Path) -> None:
    """A REINDEX left open holds its index, which every read of the table opens."""
    with psycopg.connect(one_applied) as holder:
        holder.execute("REINDEX INDEX schema_migrations_pkey")
        pid = holder.info.backend_pid
        said = locked_out(one_applied, tree, ["status"])
        holder.rollback()
    assert "cannot read schema_migrations: another session holds a lock on it" in said
    assert f"pid {pid} (application " in said
    assert "lock on schema_migrations (its index schema_migrations_pkey)" in said
    assert f"SELECT pg_terminate_backend({pid})" in said


@pytest.mark.parametrize("no_tx", [False, True], ids=["transactional", "non-transactional"])
def test_a_locked_history_table_makes_a_step_give_up_not_hang(
    dsn: str, tree: Path, no_tx: bool
) -> None:
    """The step's history row (or a non-transactional step's dirty mark) waits at most
    --lock-timeout too; the failed row that cannot be written is said."""
    header = "-- vezamig:no-transaction\n" if no_tx else ""
    write_tree(
        tree,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "up/002_b_up.sql": f"{header}CREATE INDEX b ON a (id);\n",
        },
    )
    assert run_cli(["up", "--to", "1", "-d", dsn, "--dir", str(tree)]).returncode == 0
    with psycopg.connect(dsn) as holder:
        holder.execute("LOCK TABLE schema_migrations_history")
        args = ["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "300ms"]
        result = run_cli([*args, "--lock-retries", "1"], timeout=30)
        holder.rollback()
    assert result.returncode == 4, result
    assert "up 2 (b) gave up: lock timeout (300 ms) after 2 attempt(s)" in result.stderr
    assert "retry 1/1 in 1s" in result.stderr
    assert "warning: the failed up of 2 could not be recorded" in result.stderr
    assert recorded(dsn) == [(1, False)]
    assert query(dsn, "SELECT to_regclass('b') IS NULL") == [(True,)]


SLOW_NO_TX = {
    "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
    "up/002_b_up.sql": (
        "-- vezamig:no-transaction\nSELECT pg_sleep(1);\nCREATE INDEX b ON a (id);\n"
    ),
}


def lock_history_once_marked(dsn: str, holder: psycopg.Connection[Any]) -> None:
    """Once the no-transaction step 2 is recorded dirty (its statements then run), take
    the history table: its progress and its end must now wait at most --lock-timeout."""
    wait_for(lambda: recorded(dsn) == [(1, False), (2, True)], what="2 to be recorded dirty")
    holder.execute("LOCK TABLE schema_migrations_history")


def test_a_history_table_locked_while_a_no_transaction_step_runs_stops_it_dirty_not_hung(
    dsn: str, tree: Path
) -> None:
    """Its progress and its end record used to wait for ever (the session's lock_timeout
    is 0 after a CONCURRENTLY statement, and the end ran under the role's): now under
    --lock-timeout, the end retried as a statement is, then exit 4 with the version
    dirty, the repair, and a warning that its history row is behind."""
    write_tree(tree, SLOW_NO_TX)
    assert run_cli(["up", "--to", "1", "-d", dsn, "--dir", str(tree)]).returncode == 0
    with psycopg.connect(dsn) as holder:
        args = ["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "300ms"]
        run = start_cli([*args, "--lock-retries", "1"])
        lock_history_once_marked(dsn, holder)
        result = run.wait()
        holder.rollback()
    assert result.returncode == 4, result
    assert "2: lock timeout recording the end of the step" in result.stderr
    assert "retry 1/1 in 1s" in result.stderr
    assert (
        "every statement ran; recording the end of the step gave up on a lock after 2 attempt(s)"
    ) in result.stderr
    assert "another session holds a lock on the tracking tables" in result.stderr
    assert "repair --applied 2" in result.stderr
    assert "warning: the history row of up 2 could not be updated" in result.stderr
    assert recorded(dsn) == [(1, False), (2, True)]
    assert query(dsn, "SELECT to_regclass('b') IS NOT NULL") == [(True,)]


def test_a_history_lock_released_while_the_end_of_a_no_transaction_step_retries_lets_it_end(
    dsn: str, tree: Path
) -> None:
    write_tree(tree, SLOW_NO_TX)
    assert run_cli(["up", "--to", "1", "-d", dsn, "--dir", str(tree)]).returncode == 0
    with psycopg.connect(dsn) as holder:
        args = ["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "300ms"]
        run = start_cli([*args, "--lock-retries", "5"])
        lock_history_once_marked(dsn, holder)
        wait_for(
            lambda: bool(
                query(
                    dsn,
                    "SELECT 1 FROM pg_stat_activity WHERE application_name = 'vezamig up'"
                    " AND wait_event_type = 'Lock' AND query LIKE '%SET dirty = false%'",
                )
            ),
            what="the end record to wait for the history table",
        )
        time.sleep(0.5)  # past the first attempt's 300 ms
        holder.rollback()
        result = run.wait()
    assert result.returncode == 0, result
    assert "2: lock timeout recording the end of the step" in result.stderr
    assert recorded(dsn) == [(1, False), (2, False)]
    last = history(dsn)[-1]
    assert (last["version"], last["outcome"], last["message"]) == (
        2,
        "ok",
        "2 of 2 statements ran",
    )


def test_a_read_ended_by_the_statement_timeout_while_it_waits_names_the_lock(
    one_applied: str, tree: Path
) -> None:
    with psycopg.connect(one_applied) as holder:
        holder.execute("LOCK TABLE schema_migrations")
        pid = holder.info.backend_pid
        result = run_cli(
            [
                "status",
                "-d",
                one_applied,
                "--dir",
                str(tree),
                "--lock-timeout",
                "0",
                "--statement-timeout",
                "300ms",
            ],
            timeout=30,
        )
        holder.rollback()
    assert result.returncode == 4, result
    assert (
        "cannot read schema_migrations: another session holds a lock on it (waited until "
        "--statement-timeout 300 ms ended it); nothing was changed"
    ) in result.stderr
    assert f"pid {pid} (application " in result.stderr
