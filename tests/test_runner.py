"""One step, one transaction (SPEC §2 guards/locks, §3), through the library API.

Every test ends by looking at the database itself: the schema, the tracking
table and the history, as another session sees them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import (
    applied_versions,
    execute,
    history,
    query,
    table_exists,
    user_tables,
    wait_for,
    write_tree,
)

from vezamig import runner as runner_module
from vezamig.config import Config
from vezamig.db import Connection, connect
from vezamig.errors import (
    EXIT_LOCKED,
    EXIT_REFUSED,
    EXIT_STEP_FAILED,
    EXIT_USAGE,
    GuardRefused,
    LayoutError,
    LockBusy,
    Refused,
    StepFailed,
)
from vezamig.files import discover
from vezamig.runner import NullReporter, Runner, RunResult

MakeRunner = Callable[..., Runner]


@pytest.fixture(autouse=True)
def short_retry_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after a lock timeout pause 1s, 2s, 4s…; here 50ms, 100ms, 200ms…"""
    monkeypatch.setattr(runner_module, "_BACKOFF_BASE_S", 0.05)


class Recorder(NullReporter):
    """Collects info messages; optionally acts on them (e.g. release a lock on retry)."""

    def __init__(self, on_info: Callable[[str], None] | None = None) -> None:
        self.messages: list[str] = []
        self.on_info = on_info

    def info(self, message: str) -> None:
        self.messages.append(message)
        if self.on_info is not None:
            self.on_info(message)


@pytest.fixture
def make_runner(dsn: str, tmp_path: Path) -> Iterator[MakeRunner]:
    conns: list[Connection] = []

    def make(files: dict[str, str], reporter: Any = None, **config: Any) -> Runner:
        base = write_tree(tmp_path / f"tree{len(conns)}", files)
        cfg = Config(conninfo=dsn, up_dir=base / "up", down_dir=base / "down", **config)
        conn = connect(dsn)
        conns.append(conn)
        migrations = discover(cfg.up_dir, cfg.down_dir, check_directives=True)
        return Runner(conn, cfg, migrations, reporter)

    yield make
    for c in conns:
        c.close()


def up(runner: Runner, to: int | None = None) -> RunResult:
    with runner.run_lock():
        return runner.execute(runner.plan("up", to))


def down(runner: Runner, to: int | None = None) -> RunResult:
    with runner.run_lock():
        return runner.execute(runner.plan("down", to))


THREE = {
    "up/001_a_up.sql": "CREATE TABLE a (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);\n",
    "up/002_b_up.sql": (
        "CREATE TABLE b (id int);\n"
        "INSERT INTO b VALUES (1);\n"
        "ALTER TABLE a ADD COLUMN note text;\n"
        "SELECT nte\n"
        "  FROM a;\n"
    ),
    "up/003_c_up.sql": "CREATE TABLE c (id int);\n",
}


# ---- success ---------------------------------------------------------------------------


def test_up_applies_every_pending_version_in_ascending_order(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/10_c_up.sql": "INSERT INTO log VALUES (10);",
            "up/2_b_up.sql": "INSERT INTO log VALUES (2);",
            "up/1_a_up.sql": "CREATE TABLE log (v int, at serial);",
        }
    )
    result = up(runner)
    assert [(r.version, r.outcome) for r in result.results] == [(1, "ok"), (2, "ok"), (10, "ok")]
    assert query(dsn, "SELECT v FROM log ORDER BY at") == [(2,), (10,)]
    assert applied_versions(dsn) == [1, 2, 10]
    rows = history(dsn)
    assert [(r["version"], r["direction"], r["outcome"]) for r in rows] == [
        (1, "up", "ok"),
        (2, "up", "ok"),
        (10, "up", "ok"),
    ]


def test_the_recorded_row_holds_name_checksum_and_duration(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner({"up/001_create_t_up.sql": "CREATE TABLE t (id int);"})
    up(runner)
    [(name, checksum, duration, dirty)] = query(
        dsn, "SELECT name, checksum, duration_ms, dirty FROM schema_migrations"
    )
    assert (name, checksum, dirty) == ("create_t", runner.migrations[0].checksum, False)
    assert duration >= 0
    [h] = history(dsn)
    assert h["checksum"] == checksum and h["name"] == "create_t" and h["message"] is None


def test_up_to_a_version_stops_there(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner({f"up/00{v}_v{v}_up.sql": f"CREATE TABLE t{v} ();" for v in (1, 2, 3)})
    up(runner, to=2)
    assert applied_versions(dsn) == [1, 2]
    assert not table_exists(dsn, "t3")


def test_a_run_with_nothing_to_do_writes_nothing(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner({"up/001_a_up.sql": "CREATE TABLE a ();"})
    up(runner)
    before = history(dsn)
    assert up(runner).results == []
    assert history(dsn) == before


def test_a_run_with_nothing_to_do_on_an_empty_database_creates_no_table(
    make_runner: MakeRunner, dsn: str
) -> None:
    assert up(make_runner({})).results == []
    assert not table_exists(dsn, "schema_migrations")
    assert not table_exists(dsn, "schema_migrations_history")


def test_a_file_of_only_comments_is_applied_as_a_no_op(make_runner: MakeRunner, dsn: str) -> None:
    up(make_runner({"up/001_nothing_up.sql": "-- placeholder\n/* nothing */\n"}))
    assert applied_versions(dsn) == [1]


def test_down_rolls_back_the_latest_version_only(make_runner: MakeRunner, dsn: str) -> None:
    files = {}
    for v in (1, 2, 3):
        files[f"up/00{v}_v{v}_up.sql"] = f"CREATE TABLE t{v} ();"
        files[f"down/00{v}_v{v}_down.sql"] = f"DROP TABLE t{v};"
    runner = make_runner(files)
    up(runner)
    down(runner)
    assert applied_versions(dsn) == [1, 2]
    assert table_exists(dsn, "t2") and not table_exists(dsn, "t3")
    down(runner, to=0)
    assert applied_versions(dsn) == []
    assert not table_exists(dsn, "t1")
    directions = [(r["version"], r["direction"], r["outcome"]) for r in history(dsn)]
    assert directions[3:] == [(3, "down", "ok"), (2, "down", "ok"), (1, "down", "ok")]


# ---- an SQL error mid-run --------------------------------------------------------------


def test_an_sql_error_in_the_second_of_three_versions_keeps_the_first_and_undoes_the_second(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(THREE)
    with pytest.raises(StepFailed) as info:
        up(runner)
    exc = info.value
    assert exc.exit_code == EXIT_STEP_FAILED
    assert exc.applied == [1] and exc.version == 2
    # The database: 001 stays, nothing of 002 (table b, column note) is left, 003 never ran.
    assert table_exists(dsn, "a")
    assert not table_exists(dsn, "b")
    assert query(
        dsn, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'a'::regclass AND attname = 'note'"
    ) == [(0,)]
    assert not table_exists(dsn, "c")
    assert applied_versions(dsn) == [1]
    rows = history(dsn)
    assert [(r["version"], r["direction"], r["outcome"]) for r in rows] == [
        (1, "up", "ok"),
        (2, "up", "failed"),
    ]
    assert "42703" in rows[1]["message"]


def test_a_failed_step_reports_file_line_column_sqlstate_message_hint_and_the_line(
    make_runner: MakeRunner,
) -> None:
    runner = make_runner(THREE)
    with pytest.raises(StepFailed) as info:
        up(runner)
    text = str(info.value)
    path = runner.migrations[1].up.path
    assert f'{path}:4:8: 42703 column "nte" does not exist' in text
    assert "hint: Perhaps you meant" in text
    assert "> 4 | SELECT nte" in text
    assert "failed and was rolled back" in text


def test_a_failed_step_reports_postgresqls_detail(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": (
                "CREATE TABLE t (id int PRIMARY KEY);\n"
                "INSERT INTO t VALUES (1);\n"
                "INSERT INTO t VALUES (1);\n"
            )
        }
    )
    with pytest.raises(StepFailed) as info:
        up(runner)
    text = str(info.value)
    assert "23505" in text
    assert "detail: Key (id)=(1) already exists." in text
    # PostgreSQL gives no position for this error: the failing statement is still named.
    assert f"{runner.migrations[0].up.path}:3:1: 23505" in text
    assert "> 3 | INSERT INTO t VALUES (1);" in text
    assert not table_exists(dsn, "t")


def test_an_error_at_commit_from_a_deferred_constraint_rolls_the_step_back(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": (
                "CREATE TABLE t (id int,"
                " CONSTRAINT t_u UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);\n"
                "INSERT INTO t VALUES (1), (1);\n"
            )
        }
    )
    with pytest.raises(StepFailed) as info:
        up(runner)
    assert "23505" in str(info.value)
    assert "COMMIT" in str(info.value)
    assert not table_exists(dsn, "t")
    assert applied_versions(dsn) == []
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "failed")]


def test_a_failure_while_recording_the_step_rolls_its_changes_back(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner({"up/001_a_up.sql": "SELECT 1;", "up/002_b_up.sql": "CREATE TABLE b ();"})
    up(runner, to=1)
    execute(
        dsn,
        "CREATE FUNCTION no_more() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'tracking is frozen'; END$$;"
        " CREATE TRIGGER frozen_tracking AFTER INSERT ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION no_more()",
    )
    with pytest.raises(StepFailed) as info:
        up(runner)
    assert "tracking is frozen" in str(info.value)
    assert not table_exists(dsn, "b")
    assert applied_versions(dsn) == [1]
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "ok"), (2, "failed")]


def test_a_statement_timeout_fails_the_step_and_rolls_it_back(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {"up/001_slow_up.sql": "CREATE TABLE t ();\nSELECT pg_sleep(5);\n"},
        statement_timeout_ms=200,
    )
    with pytest.raises(StepFailed) as info:
        up(runner)
    assert f"{runner.migrations[0].up.path}:2:1: 57014" in str(info.value)
    assert "statement_timeout" in str(info.value)
    assert not table_exists(dsn, "t")
    assert applied_versions(dsn) == []
    assert [r["outcome"] for r in history(dsn)] == ["failed"]


def test_the_statement_timeout_does_not_outlive_the_step(make_runner: MakeRunner) -> None:
    runner = make_runner({"up/001_a_up.sql": "SELECT 1;"}, statement_timeout_ms=200)
    up(runner)
    assert runner.conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    assert runner.conn.execute("SHOW lock_timeout").fetchone() == ("0",)


# ---- guards -----------------------------------------------------------------------------


GUARDED_DOWN = {
    "up/001_t_up.sql": "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (2);\n",
    "down/001_t_down.sql": "-- vezamig:guard {guard}\nDROP TABLE t;\n",
}


def test_a_guard_that_returns_true_lets_the_step_run(make_runner: MakeRunner, dsn: str) -> None:
    files = dict(GUARDED_DOWN)
    files["down/001_t_down.sql"] = files["down/001_t_down.sql"].format(
        guard="SELECT count(*) = 2 FROM t"
    )
    runner = make_runner(files)
    up(runner)
    down(runner)
    assert not table_exists(dsn, "t")
    assert applied_versions(dsn) == []


@pytest.mark.parametrize(
    ("guard", "returned"),
    [
        ("SELECT false", "false"),
        ("SELECT NULL::boolean", "NULL"),
        ("SELECT true WHERE false", "no row"),
        ("SELECT true FROM generate_series(1, 2)", "2 rows"),
        ("SELECT true UNION ALL SELECT false", "2 rows"),
        ("SELECT 1", "1 (an int4, not a boolean)"),
        ("SELECT 'true'::text", "'true' (a text, not a boolean)"),
        # What PostgreSQL shows, never a Python repr (Decimal('1.5'), [True], b'…').
        ("SELECT 1.5::numeric", "1.5 (a numeric, not a boolean)"),
        ("SELECT ARRAY[true]", "'{t}' (a bool[], not a boolean)"),
        ("SELECT ROW(true, 1)", "'(t,1)' (a record, not a boolean)"),
        ("SELECT '\\x00ff'::bytea", "'\\x00ff' (a bytea, not a boolean)"),
        ("SELECT '{\"a\": 1}'::jsonb", "'{\"a\": 1}' (a jsonb, not a boolean)"),
        ("SELECT 'it''s'", "'it''s' (a text, not a boolean)"),
        ("SELECT repeat('x', 200000)", f"'{'x' * 160}… (200000 characters)' (a text, not"),
        ("SELECT count(*) = 0 FROM no_such_table", "an error: 42P01"),
        ("SELECT 1/0 = 1", "an error: 22012"),
        ("VALUES (true), (true)", "2 rows"),
        # Two rows at most are read (found by an audit: a guard that forgot its
        # aggregate fetched the whole table while the step held its locks): a third
        # row, which would divide by zero, is never computed.
        ("SELECT 1 / (3 - n) > 0 FROM generate_series(1, 5) n", "2 rows or more"),
        ("SELECT false; -- a trailing comment after its semicolon", "false"),
    ],
)
def test_a_guard_that_does_not_return_exactly_one_true_refuses_the_step(
    make_runner: MakeRunner, dsn: str, guard: str, returned: str
) -> None:
    files = dict(GUARDED_DOWN)
    files["down/001_t_down.sql"] = files["down/001_t_down.sql"].format(guard=guard)
    runner = make_runner(files)
    up(runner)
    with pytest.raises(GuardRefused) as info:
        down(runner)
    exc = info.value
    assert exc.exit_code == EXIT_REFUSED
    text = str(exc)
    assert f"{runner.migrations[0].down.path}:1" in text  # type: ignore[union-attr]
    assert f"guard:    {guard}" in text
    assert f"returned: {returned}" in text
    # Nothing changed, and the history says why.
    assert query(dsn, "SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    assert applied_versions(dsn) == [1]
    last = history(dsn)[-1]
    assert (last["version"], last["direction"], last["outcome"]) == (1, "down", "refused")
    assert returned in last["message"] and guard in last["message"]


def test_every_guard_must_pass_and_the_first_refusal_is_named(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": (
                "-- vezamig:guard SELECT true\n"
                "-- vezamig:guard SELECT 2 > 1\n"
                "-- vezamig:guard SELECT false\n"
                "CREATE TABLE t ();\n"
            )
        }
    )
    with pytest.raises(GuardRefused) as info:
        up(runner)
    assert "001_t_up.sql:3" in str(info.value)
    assert not table_exists(dsn, "t")
    assert [r["outcome"] for r in history(dsn)] == ["refused"]


@pytest.mark.parametrize(
    ("guard", "passes"),
    [
        # (A data-modifying WITH or FOR UPDATE shows in the guard's tree and is a
        # directive problem before anything runs: test_directives.py.)
        ("SELECT wipe()", False),
        ("SELECT true FROM (SELECT wipe()) s", False),
        ("SELECT sneaky_wipe()", True),
        ("SELECT escape_read_only()", False),
        ("SELECT nextval('s') > 0", False),
    ],
)
def test_a_guard_can_never_change_data(
    make_runner: MakeRunner, dsn: str, guard: str, passes: bool
) -> None:
    execute(
        dsn,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2); CREATE SEQUENCE s;"
        " CREATE FUNCTION wipe() RETURNS boolean LANGUAGE sql AS"
        " 'DELETE FROM t; SELECT true';"
        # Swallows the read-only error and says yes: the guard passes, the data stays.
        " CREATE FUNCTION sneaky_wipe() RETURNS boolean LANGUAGE plpgsql AS"
        " $$BEGIN DELETE FROM t; RETURN true; EXCEPTION WHEN others THEN RETURN true; END$$;"
        " CREATE FUNCTION escape_read_only() RETURNS boolean LANGUAGE plpgsql AS"
        " $$BEGIN PERFORM set_config('transaction_read_only', 'off', true);"
        " DELETE FROM t; RETURN true; END$$",
    )
    files = {"up/001_u_up.sql": f"-- vezamig:guard {guard}\nCREATE TABLE u ();\n"}
    runner = make_runner(files)
    if passes:
        up(runner)
    else:
        with pytest.raises(GuardRefused):
            up(runner)
    assert table_exists(dsn, "u") is passes
    assert query(dsn, "SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    assert query(dsn, "SELECT last_value, is_called FROM s") == [(1, False)]


def test_a_guard_cannot_change_settings_for_the_step(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": (
                "-- vezamig:guard SELECT set_config('search_path', 'nowhere', true) IS NOT NULL\n"
                "CREATE TABLE t ();\n"
            )
        }
    )
    up(runner)
    assert table_exists(dsn, "public.t")


def test_a_guard_in_an_up_file_sees_the_schema_before_the_step(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {"up/001_t_up.sql": "-- vezamig:guard SELECT to_regclass('t') IS NULL\nCREATE TABLE t ();"}
    )
    up(runner)
    assert table_exists(dsn, "t")


def test_dry_run_guard_evaluation_reports_each_result_and_changes_nothing(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": (
                "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nCREATE SEQUENCE s;"
            ),
            "down/001_t_down.sql": (
                "-- vezamig:guard SELECT true\n"
                "-- vezamig:guard SELECT nextval('s') > 0\n"
                "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)\n"
                "DROP TABLE t;"
            ),
        }
    )
    up(runner)
    plan = runner.plan("down", None)
    results = runner.evaluate_guards(plan)[(1, "down")]
    assert [r.passed for r in results] == [True, False, False]
    assert results[1].returned.startswith("an error: 25006")
    assert results[2].returned == "false"
    assert query(dsn, "SELECT id FROM t") == [(1,)]
    assert query(dsn, "SELECT last_value, is_called FROM s") == [(1, False)]
    assert applied_versions(dsn) == [1]
    assert len(history(dsn)) == 1


# ---- the lock directive ------------------------------------------------------------------


LOCKED = {
    "up/001_t_up.sql": "CREATE TABLE tracks (id int);\nINSERT INTO tracks VALUES (1);\n",
    "up/002_lock_up.sql": (
        "-- vezamig:lock tracks\n"
        "-- vezamig:guard SELECT count(*) = 1 FROM tracks\n"
        "ALTER TABLE tracks ADD COLUMN storage text;\n"
    ),
}


def hold_lock(
    dsn: str, mode: str = "ROW EXCLUSIVE", table: str = "tracks"
) -> psycopg.Connection[Any]:
    other = psycopg.connect(dsn)
    other.execute(f"LOCK TABLE {table} IN {mode} MODE")
    return other


def test_a_lock_held_elsewhere_makes_the_step_give_up_after_its_retries(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(LOCKED, reporter=Recorder(), lock_timeout_ms=200, lock_retries=1)
    up(runner, to=1)
    other = hold_lock(dsn, "ACCESS SHARE")
    try:
        with pytest.raises(LockBusy) as info:
            up(runner)
    finally:
        other.close()
    assert info.value.exit_code == EXIT_LOCKED
    assert "2 attempt(s)" in str(info.value)
    assert "rolled back" in str(info.value)
    assert runner.reporter.inner.messages and "retry 1/1" in runner.reporter.inner.messages[0]  # type: ignore[attr-defined]
    assert query(
        dsn,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'tracks'::regclass"
        " AND attname = 'storage'",
    ) == [(0,)]
    assert applied_versions(dsn) == [1]
    rows = history(dsn)
    # One history row for the step, for its final outcome, not one per attempt.
    assert [(r["version"], r["outcome"]) for r in rows] == [(1, "ok"), (2, "failed")]
    assert "lock timeout" in rows[1]["message"]


def releasing_on_retry(holder: list[psycopg.Connection[Any]]) -> Recorder:
    """A reporter that ends the lock holder's session when the run says it will retry."""

    def release(message: str) -> None:
        if "retry" in message:
            holder.pop().close()

    return Recorder(on_info=release)


def test_a_no_transaction_step_that_succeeds_after_a_retry_says_so_as_a_step_does(
    make_runner: MakeRunner, dsn: str
) -> None:
    """Found by an audit: its result line and history row said nothing of the retry."""
    holder: list[psycopg.Connection[Any]] = []
    files = {
        "up/001_t_up.sql": LOCKED["up/001_t_up.sql"],
        "up/002_alter_up.sql": (
            "-- vezamig:no-transaction\nALTER TABLE tracks ADD COLUMN storage text;\n"
        ),
    }
    runner = make_runner(
        files, reporter=releasing_on_retry(holder), lock_timeout_ms=200, lock_retries=1
    )
    up(runner, to=1)
    holder.append(hold_lock(dsn, "ACCESS SHARE"))
    result = up(runner)
    assert applied_versions(dsn) == [1, 2]
    assert result.results[-1].message == "after 1 lock-timeout retry"
    assert history(dsn)[-1]["message"] == "1 of 1 statements ran (after 1 lock-timeout retry)"


def test_a_lock_released_before_the_retry_lets_the_step_succeed(
    make_runner: MakeRunner, dsn: str
) -> None:
    holder: list[psycopg.Connection[Any]] = []
    runner = make_runner(
        LOCKED, reporter=releasing_on_retry(holder), lock_timeout_ms=200, lock_retries=1
    )
    up(runner, to=1)
    holder.append(hold_lock(dsn))
    result = up(runner)
    assert applied_versions(dsn) == [1, 2]
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "ok"), (2, "ok")]
    # The run says the step needed a retry: its own duration is the last attempt's.
    assert history(dsn)[-1]["message"] == "after 1 lock-timeout retry"
    assert result.results[-1].message == "after 1 lock-timeout retry"
    # The run's own time (the summary's) counts the attempt that timed out (200 ms)
    # and the pause before the retry; the step's duration is its last attempt's.
    assert result.elapsed_ms >= 200 + sum(r.duration_ms for r in result.results)


def test_the_lock_is_taken_before_the_guards_so_check_and_change_are_atomic(
    make_runner: MakeRunner, dsn: str
) -> None:
    """While the step runs, a writer waiting on tracks cannot slip in between guard and body."""
    runner = make_runner(
        {
            "up/001_t_up.sql": "CREATE TABLE tracks (id int);",
            "up/002_lock_up.sql": (
                "-- vezamig:lock tracks\n"
                "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks)\n"
                "SELECT pg_sleep(0.3);\n"
                "ALTER TABLE tracks ADD COLUMN storage text NOT NULL;\n"
            ),
        }
    )
    up(runner, to=1)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            # Waits for the step's ACCESS EXCLUSIVE lock, then fails on the NOT NULL column.
            wait_for(
                lambda: bool(
                    query(
                        dsn,
                        "SELECT 1 FROM pg_locks l JOIN pg_class c"
                        " ON c.oid = l.relation WHERE c.relname = 'tracks'"
                        " AND l.mode = 'AccessExclusiveLock' AND l.granted",
                    )
                ),
                what="the step's lock",
            )
            execute(dsn, "INSERT INTO tracks (id) VALUES (1)")
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    up(runner)
    t.join(30)
    assert applied_versions(dsn) == [1, 2]
    assert len(errors) == 1 and "storage" in str(errors[0])
    assert query(dsn, "SELECT count(*) FROM tracks") == [(0,)]


def test_lock_names_are_quoted_identifiers_never_sql(make_runner: MakeRunner, dsn: str) -> None:
    execute(dsn, 'CREATE TABLE users (id int); CREATE TABLE "x; DROP TABLE users; --" (id int)')
    runner = make_runner(
        {"up/001_a_up.sql": '-- vezamig:lock "x; DROP TABLE users; --", public.users\nSELECT 1;'}
    )
    up(runner)
    assert table_exists(dsn, "users")
    assert applied_versions(dsn) == [1]


def test_locking_a_table_that_does_not_exist_fails_the_step_naming_the_directive_line(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {"up/001_a_up.sql": "-- note\n-- vezamig:lock missing_table\nCREATE TABLE a ();"}
    )
    with pytest.raises(StepFailed) as info:
        up(runner)
    assert "001_a_up.sql:2:17: 42P01" in str(info.value)
    assert not table_exists(dsn, "a")


# ---- preflight refusals -----------------------------------------------------------------


def test_down_of_an_irreversible_version_is_refused_naming_all_of_them(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/001_a_up.sql": "CREATE TABLE a ();",
            "down/001_a_down.sql": "DROP TABLE a;",
            "up/002_b_up.sql": "CREATE TABLE b ();",
            "up/003_c_up.sql": "CREATE TABLE c ();",
            "down/003_c_down.sql": "DROP TABLE c;",
            "up/004_d_up.sql": "CREATE TABLE d ();",
        }
    )
    up(runner)
    with pytest.raises(Refused) as info:
        down(runner, to=0)
    assert info.value.exit_code == EXIT_REFUSED
    text = str(info.value)
    assert "irreversible" in text and "2 (b)" in text and "4 (d)" in text
    assert applied_versions(dsn) == [1, 2, 3, 4]
    assert all(table_exists(dsn, t) for t in "abcd")
    assert [r["direction"] for r in history(dsn)] == ["up"] * 4


def test_refusals_list_every_reason_and_change_nothing(make_runner: MakeRunner, dsn: str) -> None:
    files = {f"up/00{v}_v{v}_up.sql": f"CREATE TABLE t{v} ();" for v in (1, 2, 3, 5)}
    runner = make_runner(files)
    up(runner)
    execute(dsn, "UPDATE schema_migrations SET dirty = true WHERE version = 1")
    execute(dsn, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 2")
    execute(dsn, "DELETE FROM schema_migrations WHERE version = 3")
    execute(dsn, "INSERT INTO schema_migrations SELECT 9, 'gone', 'x', now(), 'me', 0, false")
    with pytest.raises(Refused) as info:
        up(runner)
    reasons = info.value.details
    assert len(reasons) == 4, reasons
    assert "version 1 (v1) is dirty" in reasons[0]
    assert "version 2 (v2) is modified" in reasons[1]
    assert "version 9 (gone) is missing" in reasons[2]
    assert "out-of-order" in reasons[3] and "3" in reasons[3]
    assert applied_versions(dsn) == [1, 2, 5, 9]
    assert len(history(dsn)) == 4


def test_allow_out_of_order_applies_a_pending_version_below_the_highest(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner({"up/001_a_up.sql": "SELECT 1;", "up/003_c_up.sql": "SELECT 1;"})
    up(runner)
    late = make_runner(
        {
            "up/001_a_up.sql": "SELECT 1;",
            "up/002_b_up.sql": "CREATE TABLE b ();",
            "up/003_c_up.sql": "SELECT 1;",
        }
    )
    with pytest.raises(Refused, match="out-of-order"):
        up(late)
    assert applied_versions(dsn) == [1, 3]
    with late.run_lock():
        late.execute(late.plan("up", None, allow_out_of_order=True))
    assert applied_versions(dsn) == [1, 2, 3]
    assert table_exists(dsn, "b")


# ---- the step owns its transaction -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "CREATE TABLE a ();\nCOMMIT;\nCREATE TABLE b ();\n",
        "BEGIN;\nCREATE TABLE a ();\nCOMMIT;\n",
        "CREATE TABLE a ();\nROLLBACK;\n",
        "CREATE TABLE a ();\nEND;\n",
        "CREATE TABLE a ();\nABORT;\n",
        "CREATE TABLE a ();\nPREPARE TRANSACTION 'x';\n",
    ],
)
def test_a_body_that_ends_the_steps_transaction_is_a_layout_error_before_anything_runs(
    make_runner: MakeRunner, dsn: str, body: str
) -> None:
    runner = make_runner({"up/001_first_up.sql": "CREATE TABLE first ();", "up/002_x_up.sql": body})
    with pytest.raises(LayoutError) as info:
        up(runner)
    assert info.value.exit_code == EXIT_USAGE
    assert "002_x_up.sql:" in str(info.value)
    assert "transaction" in str(info.value)
    assert user_tables(dsn) == []


def test_savepoints_inside_a_step_are_fine(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner(
        {
            "up/001_a_up.sql": (
                "CREATE TABLE a (id int);\nSAVEPOINT s;\nINSERT INTO a VALUES (1);\n"
                "ROLLBACK TO SAVEPOINT s;\nINSERT INTO a VALUES (2);\nRELEASE SAVEPOINT s;\n"
            )
        }
    )
    up(runner)
    assert query(dsn, "SELECT id FROM a") == [(2,)]
    assert applied_versions(dsn) == [1]


def test_a_guard_that_waits_for_a_lock_counts_as_a_lock_timeout_not_a_refusal(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(
        {
            "up/001_t_up.sql": "CREATE TABLE tracks (id int);",
            "up/002_g_up.sql": (
                "-- vezamig:guard SELECT count(*) = 0 FROM tracks\nCREATE TABLE g ();\n"
            ),
        },
        lock_timeout_ms=200,
        lock_retries=0,
    )
    up(runner, to=1)
    other = hold_lock(dsn, "ACCESS EXCLUSIVE")
    try:
        with pytest.raises(LockBusy) as info:
            up(runner)
    finally:
        other.close()
    assert info.value.exit_code == EXIT_LOCKED
    assert not table_exists(dsn, "g")
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "ok"), (2, "failed")]


def test_retries_after_a_lock_timeout_pause_longer_each_time(
    make_runner: MakeRunner, dsn: str
) -> None:
    runner = make_runner(LOCKED, reporter=Recorder(), lock_timeout_ms=100, lock_retries=3)
    up(runner, to=1)
    other = hold_lock(dsn, "ACCESS SHARE")
    try:
        with pytest.raises(LockBusy, match="4 attempt"):
            up(runner)
    finally:
        other.close()
    messages = runner.reporter.inner.messages  # type: ignore[attr-defined]
    assert [m.split(" in ")[-1] for m in messages] == ["0.05s", "0.1s", "0.2s"]
    assert [m.split("retry ")[1].split(" ")[0] for m in messages] == ["1/3", "2/3", "3/3"]
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "ok"), (2, "failed")]


def test_zero_lock_retries_gives_up_at_the_first_timeout(make_runner: MakeRunner, dsn: str) -> None:
    runner = make_runner(LOCKED, reporter=Recorder(), lock_timeout_ms=100, lock_retries=0)
    up(runner, to=1)
    other = hold_lock(dsn, "ACCESS SHARE")
    try:
        with pytest.raises(LockBusy, match="1 attempt"):
            up(runner)
    finally:
        other.close()
    assert runner.reporter.inner.messages == []  # type: ignore[attr-defined]
    assert applied_versions(dsn) == [1]


def test_a_body_statement_waiting_for_a_lock_also_times_out_and_retries(
    make_runner: MakeRunner, dsn: str
) -> None:
    """No lock directive: the ALTER TABLE itself waits, and lock_timeout still applies."""
    runner = make_runner(
        {
            "up/001_t_up.sql": "CREATE TABLE tracks (id int);",
            "up/002_alter_up.sql": "ALTER TABLE tracks ADD COLUMN x int;",
        },
        reporter=Recorder(),
        lock_timeout_ms=100,
        lock_retries=1,
    )
    up(runner, to=1)
    other = hold_lock(dsn, "ACCESS SHARE")
    try:
        with pytest.raises(LockBusy):
            up(runner)
    finally:
        other.close()
    assert applied_versions(dsn) == [1]
    assert [(r["version"], r["outcome"]) for r in history(dsn)] == [(1, "ok"), (2, "failed")]


def test_after_a_lost_connection_the_old_session_is_found_and_ended_whatever_it_renamed(
    make_runner: MakeRunner, dsn: str
) -> None:
    """A backend that outlives its client (a network cut) could still commit: before the
    tracking row is read, it must be ended, even if the body set application_name."""
    runner = make_runner({"up/001_a_up.sql": "CREATE TABLE a ();\n"})
    runner.tracker.ensure()
    lost = connect(dsn)  # stands for the run's connection, cut off from its client
    message = "BEGIN; SET application_name = 'backfill'; SELECT pg_sleep(30); COMMIT"
    worker = threading.Thread(target=lambda: suppress_errors(lost, message), daemon=True)
    worker.start()
    runner._pid, runner._sent = lost.info.backend_pid, message
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfill'"
    deadline = time.monotonic() + 30
    while query(dsn, sleeping) != [(1,)]:
        assert time.monotonic() < deadline, "the lost session did not start"
        time.sleep(0.05)
    other = connect(dsn)
    try:
        step = runner.plan("up", None).steps[0]
        assert runner._committed_on(other, step) is False  # ended first, then read
    finally:
        other.close()
    assert query(dsn, sleeping) == [(0,)]
    worker.join(timeout=30)


def suppress_errors(conn: Connection, text: str) -> None:
    with contextlib.suppress(Exception):
        conn.execute(text)
    with contextlib.suppress(Exception):
        conn.close()
