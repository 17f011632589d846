"""Non-transactional steps (SPEC §6), on a real PostgreSQL, through the real CLI.

The story of every test: a table with two equal e-mails, and a version 2 that
builds three indexes CONCURRENTLY, one statement each. The second one is UNIQUE,
so it fails half-way through the step and leaves an INVALID index behind; the
operator then has to say what state the database is in (`repair`).
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    CliResult,
    applied_versions,
    backends_running,
    execute,
    held_elsewhere,
    history,
    query,
    run_cli,
    start_cli,
    wait_for,
    write_tree,
)

from vezamig.db import connect
from vezamig.errors import EXIT_LOCKED, EXIT_OK, EXIT_REFUSED, EXIT_STEP_FAILED, EXIT_USAGE

CREATE_T = """\
-- 1: accounts with e-mails that are not unique yet.
CREATE TABLE t (id int PRIMARY KEY, email text);
INSERT INTO t VALUES (1, 'a@example.org'), (2, 'a@example.org');
"""

# Line 4, 5 and 6 hold the statements: the failure messages name them by line.
INDEXES_UP = """\
-- 2: e-mail indexes, built without blocking writes.
-- vezamig:no-transaction
-- vezamig:guard SELECT to_regclass('t') IS NOT NULL
CREATE INDEX CONCURRENTLY idx_t_email ON t (email);
CREATE UNIQUE INDEX CONCURRENTLY uq_t_email ON t (email);
CREATE INDEX CONCURRENTLY idx_t_id_email ON t (id, email);
"""

INDEXES_DOWN = """\
-- Roll back 2: index drops only.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_t_id_email;
DROP INDEX CONCURRENTLY IF EXISTS uq_t_email;
DROP INDEX CONCURRENTLY IF EXISTS idx_t_email;
"""


def tree(tmp_path: Path, **extra: str) -> Path:
    """The story's tree; ``up__003_x_up="…"`` adds or replaces ``up/003_x_up.sql``."""
    files = {
        "up/001_accounts_up.sql": CREATE_T,
        "up/002_email_indexes_up.sql": INDEXES_UP,
        "down/002_email_indexes_down.sql": INDEXES_DOWN,
    }
    files.update({k.replace("__", "/") + ".sql": v for k, v in extra.items()})
    return write_tree(tmp_path / "sql", files)


def vz(dsn: str, base: Path, *args: str) -> CliResult:
    return run_cli([*args, "--dir", str(base), "-d", dsn])


def indexes(dsn: str) -> dict[str, bool]:
    """Index name → valid, for table t."""
    rows = query(
        dsn,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 't'::regclass AND NOT i.indisprimary",
    )
    return dict(rows)


def tracking(dsn: str) -> dict[int, bool]:
    """Version → dirty."""
    return dict(query(dsn, "SELECT version, dirty FROM schema_migrations"))


def fail_halfway(dsn: str, base: Path) -> None:
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_STEP_FAILED, result


# ---- success -------------------------------------------------------------------------


def test_a_no_transaction_create_index_concurrently_applies_and_is_recorded_clean(
    dsn: str, tmp_path: Path
) -> None:
    execute(dsn, "CREATE TABLE t (id int PRIMARY KEY, email text)")
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_email_index_up.sql": "-- vezamig:no-transaction\n"
            "CREATE INDEX CONCURRENTLY idx_t_email ON t (email);\n",
        },
    )
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_OK, result
    assert indexes(dsn) == {"idx_t_email": True}
    assert tracking(dsn) == {1: False}
    [row] = history(dsn)
    assert (row["direction"], row["outcome"], row["message"]) == (
        "up",
        "ok",
        "1 of 1 statements ran",
    )


def test_a_no_transaction_down_drops_concurrently_and_deletes_the_record(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    # Unique e-mails, so every index builds.
    (base / "up/001_accounts_up.sql").write_text(CREATE_T.replace("(2, 'a@", "(2, 'b@"))
    assert vz(dsn, base, "up").returncode == EXIT_OK
    assert indexes(dsn) == {"idx_t_email": True, "uq_t_email": True, "idx_t_id_email": True}

    result = vz(dsn, base, "down", "--yes")
    assert result.returncode == EXIT_OK, result
    assert indexes(dsn) == {}
    assert tracking(dsn) == {1: False}
    last = history(dsn)[-1]
    assert (last["version"], last["direction"], last["outcome"], last["message"]) == (
        2,
        "down",
        "ok",
        "3 of 3 statements ran",
    )


def test_statements_are_split_by_postgresqls_parser_not_at_every_semicolon(
    dsn: str, tmp_path: Path
) -> None:
    # Semicolons inside a dollar-quoted body, a string and a comment are not boundaries.
    body = """\
-- vezamig:no-transaction
CREATE TABLE notes (body text);
CREATE FUNCTION one() RETURNS int LANGUAGE plpgsql AS $fn$
BEGIN
  RETURN 1; -- a semicolon; in a comment
END;
$fn$;
INSERT INTO notes VALUES ('a;b'), (E'c\\';d');
/* ; */ CREATE INDEX CONCURRENTLY idx_notes_body ON notes (body);
"""
    base = write_tree(tmp_path / "sql", {"up/001_notes_up.sql": body})
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_OK, result
    assert query(dsn, "SELECT one()") == [(1,)]
    assert query(dsn, "SELECT body FROM notes ORDER BY body") == [("a;b",), ("c';d",)]
    assert history(dsn)[-1]["message"] == "4 of 4 statements ran"


# ---- failure half-way --------------------------------------------------------------


def test_a_failure_at_the_second_statement_leaves_the_version_dirty_and_says_what_ran(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    up = base / "up/002_email_indexes_up.sql"
    result = vz(dsn, base, "up")
    assert result.returncode == EXIT_STEP_FAILED, result
    err = result.stderr
    assert f"{up}:5:1: 23505" in err
    assert "Key (email)=(a@example.org) is duplicated" in err
    assert "> 5 | CREATE UNIQUE INDEX CONCURRENTLY uq_t_email ON t (email);" in err
    assert f"statements that ran: {up}:4" in err
    assert f"statement that failed: 2 of 3 at {up}:5" in err
    assert f"statements not run: {up}:6" in err
    assert "vezamig repair --applied 2" in err and "vezamig repair --rolled-back 2" in err

    # The database is exactly as the message says: 1 built, 2 INVALID, 3 absent.
    assert indexes(dsn) == {"idx_t_email": True, "uq_t_email": False}
    assert tracking(dsn) == {1: False, 2: True}
    row = history(dsn)[-1]
    assert (row["version"], row["direction"], row["outcome"]) == (2, "up", "failed")
    assert row["message"] == (
        f"statement 2 of 3 failed at {up}:5; ran: {up}:4; not run: {up}:6 (a CREATE INDEX "
        "CONCURRENTLY that did not finish leaves an INVALID index behind, which enforces "
        "nothing and is not replaced by a new run: public.uq_t_email is INVALID now; drop it "
        "(DROP INDEX CONCURRENTLY IF EXISTS public.uq_t_email) before you repair)"
    )


def test_every_later_up_and_down_refuses_while_a_version_is_dirty(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path, up__003_later_up="CREATE TABLE later (id int);\n")
    fail_halfway(dsn, base)
    rows_before = len(history(dsn))

    for args in (["up"], ["up", "--to", "3"], ["down", "--yes"], ["down", "--to", "0", "--yes"]):
        result = vz(dsn, base, *args)
        assert result.returncode == EXIT_REFUSED, result
        err = result.stderr
        assert "version 2 (email_indexes) is dirty" in err
        assert "Last recorded progress: statement 2 of 3 failed" in err
        opts = f"-d {shlex.quote(dsn)} --dir {base}"  # this run's -d and --dir, to paste
        assert (
            f"`vezamig repair --applied 2 {opts}` if the version's changes are in place, "
            f"or `vezamig repair --rolled-back 2 {opts}` if they are not"
        ) in err

    assert query(dsn, "SELECT to_regclass('later') IS NULL") == [(True,)]
    assert tracking(dsn) == {1: False, 2: True}
    assert indexes(dsn) == {"idx_t_email": True, "uq_t_email": False}
    assert len(history(dsn)) == rows_before


def test_repair_applied_after_finishing_by_hand_marks_the_version_clean(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    fail_halfway(dsn, base)
    # The operator finishes the step by hand: fix the data, rebuild, build the rest.
    execute(dsn, "UPDATE t SET email = 'b@example.org' WHERE id = 2")
    execute(dsn, "REINDEX INDEX CONCURRENTLY uq_t_email")
    execute(dsn, "CREATE INDEX CONCURRENTLY idx_t_id_email ON t (id, email)")

    result = vz(dsn, base, "repair", "--applied", "2", "--yes")
    assert result.returncode == EXIT_OK, result
    assert "mark as applied (clean); last known: statement 2 of 3 failed" in result.stdout
    assert tracking(dsn) == {1: False, 2: False}
    row = history(dsn)[-1]
    assert (row["version"], row["direction"], row["outcome"], row["message"]) == (
        2,
        "repair",
        "ok",
        "dirty version resolved as applied by the operator",
    )

    # Nothing left to do, and the version rolls back normally.
    up = vz(dsn, base, "up")
    assert up.returncode == EXIT_OK and "nothing to do" in up.stdout
    assert vz(dsn, base, "down", "--yes").returncode == EXIT_OK
    assert indexes(dsn) == {}


def test_repair_rolled_back_after_undoing_by_hand_lets_up_run_the_step_again(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    fail_halfway(dsn, base)
    # The operator undoes the step by hand and fixes the data.
    execute(dsn, "DROP INDEX CONCURRENTLY uq_t_email")
    execute(dsn, "DROP INDEX CONCURRENTLY idx_t_email")
    execute(dsn, "UPDATE t SET email = 'b@example.org' WHERE id = 2")

    result = vz(dsn, base, "repair", "--rolled-back", "2", "--yes")
    assert result.returncode == EXIT_OK, result
    assert applied_versions(dsn) == [1]
    row = history(dsn)[-1]
    assert (row["version"], row["direction"], row["outcome"], row["message"]) == (
        2,
        "repair",
        "ok",
        "dirty version resolved as rolled back by the operator",
    )

    again = vz(dsn, base, "up")
    assert again.returncode == EXIT_OK, again
    assert indexes(dsn) == {"idx_t_email": True, "uq_t_email": True, "idx_t_id_email": True}
    assert tracking(dsn) == {1: False, 2: False}


def test_a_failed_no_transaction_down_leaves_the_version_recorded_and_dirty(
    dsn: str, tmp_path: Path
) -> None:
    down = (
        "-- vezamig:no-transaction\n"
        "DROP INDEX CONCURRENTLY idx_t_email;\n"
        "DROP INDEX CONCURRENTLY no_such_index;\n"
    )
    base = tree(tmp_path, down__002_email_indexes_down=down)
    (base / "up/001_accounts_up.sql").write_text(CREATE_T.replace("(2, 'a@", "(2, 'b@"))
    assert vz(dsn, base, "up").returncode == EXIT_OK

    result = vz(dsn, base, "down", "--yes")
    assert result.returncode == EXIT_STEP_FAILED, result
    path = base / "down/002_email_indexes_down.sql"
    assert f"statement that failed: 2 of 2 at {path}:3" in result.stderr
    assert "idx_t_email" not in indexes(dsn)
    assert tracking(dsn) == {1: False, 2: True}

    # For a down, finishing it by hand means the version is rolled back.
    opts = f"-d {shlex.quote(dsn)} --dir {base}"
    resolve = f"`vezamig repair --rolled-back 2 {opts}` if you finished the rollback"
    assert resolve in result.stderr, result
    assert f"`vezamig repair --applied 2 {opts}` if you undid it" in result.stderr

    # The down did remove what it could; the operator finishes it and pastes the command.
    execute(dsn, "DROP INDEX uq_t_email; DROP INDEX idx_t_id_email")
    printed = shlex.split(resolve.split("`")[1])
    assert printed[:4] == ["vezamig", "repair", "--rolled-back", "2"]
    r = run_cli(printed[1:], cwd=tmp_path)  # exactly as printed: -d included
    assert r.returncode == EXIT_OK, r
    assert applied_versions(dsn) == [1]


# ---- guards, syntax, progress ---------------------------------------------------------


def test_a_refusing_guard_stops_a_no_transaction_step_before_it_is_recorded(
    dsn: str, tmp_path: Path
) -> None:
    up = INDEXES_UP.replace("IS NOT NULL", "IS NULL")
    base = tree(tmp_path, up__002_email_indexes_up=up)
    result = vz(dsn, base, "up")
    assert result.returncode == EXIT_REFUSED, result
    assert f"{base / 'up/002_email_indexes_up.sql'}:3" in result.stderr
    assert "returned: false" in result.stderr
    assert applied_versions(dsn) == [1]
    assert indexes(dsn) == {}
    row = history(dsn)[-1]
    assert (row["version"], row["outcome"]) == (2, "refused")


def test_guards_of_a_no_transaction_step_run_in_a_read_only_transaction(
    dsn: str, tmp_path: Path
) -> None:
    execute(dsn, "CREATE SEQUENCE s")
    up = (
        "-- vezamig:no-transaction\n"
        "-- vezamig:guard SELECT nextval('s') > 0\n"
        "CREATE TABLE never (id int);\n"
    )
    base = write_tree(tmp_path / "sql", {"up/001_x_up.sql": up})
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_REFUSED, result
    assert "read-only transaction" in result.stderr
    assert query(dsn, "SELECT is_called FROM s") == [(False,)]
    assert query(dsn, "SELECT to_regclass('never') IS NULL") == [(True,)]


def test_a_guard_that_hits_the_lock_timeout_is_retried_then_exits_4_with_one_row(
    dsn: str, tmp_path: Path
) -> None:
    # SPEC §5 --lock-retries holds for every step: here the guard needs the lock.
    up = (
        "-- vezamig:no-transaction\n"
        "-- vezamig:guard SELECT count(*) = 0 FROM t\n"
        "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
    )
    base = tree(tmp_path, up__002_email_indexes_up=up)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE"):
        result = vz(dsn, base, "up", "--lock-timeout", "100ms", "--lock-retries", "1")
    assert result.returncode == EXIT_LOCKED, result
    assert "retry 1/1" in result.stderr
    assert "up 2 (email_indexes) gave up: lock timeout (100 ms) after 2 attempt(s)" in (
        result.stderr
    )
    assert applied_versions(dsn) == [1] and indexes(dsn) == {}
    row = history(dsn)[-1]
    assert (row["version"], row["outcome"]) == (2, "failed")
    assert row["message"].startswith("lock timeout (100 ms) after 2 attempt(s)")


def test_a_statement_that_hits_the_lock_timeout_is_retried_then_exits_4_dirty(
    dsn: str, tmp_path: Path
) -> None:
    # --lock-timeout holds for a no-transaction step's statements too (a VACUUM FULL or
    # an ALTER TABLE there queues every query on the table behind it), also against a
    # database-level lock_timeout; not for CONCURRENTLY ones (test above: they wait).
    up = "-- vezamig:no-transaction\nCREATE TABLE side ();\nALTER TABLE t ADD COLUMN x int;\n"
    base = tree(tmp_path, up__002_email_indexes_up=up)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    execute(dsn, "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET lock_timeout = 0',"
                 " current_database()); END$$")  # fmt: skip
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE t IN ACCESS SHARE MODE"):
        result = vz(dsn, base, "up", "--lock-timeout", "100ms", "--lock-retries", "1")
    assert result.returncode == EXIT_LOCKED, result
    path = base / "up/002_email_indexes_up.sql"
    assert f"2: lock timeout at {path}:3" in result.stderr and "retry 1/1" in result.stderr
    assert "gave up part-way (non-transactional): lock timeout (100 ms) after 2 attempt(s)" in (
        result.stderr
    )
    assert f"statements that ran: {path}:2" in result.stderr
    assert tracking(dsn) == {1: False, 2: True}
    assert history(dsn)[-1]["message"].startswith(
        f"statement 2 of 2 gave up on a lock after 2 attempt(s) at {path}:3"
    )


def test_a_no_transaction_step_that_makes_the_session_read_only_still_records_itself(
    dsn: str, tmp_path: Path
) -> None:
    # vezamig's progress and end rows were refused (25006): dirty, exit 1, although
    # every statement ran.
    up = (
        "-- vezamig:no-transaction\n"
        "CREATE TABLE z (id int);\n"
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;\n"
        "SELECT 1;\n"
    )
    files = {"up/001_ro_up.sql": up, "up/002_next_up.sql": "CREATE TABLE n ();\n"}
    base = write_tree(tmp_path / "sql", files)
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_OK, result
    assert tracking(dsn) == {1: False, 2: False}
    assert history(dsn)[0]["message"] == "3 of 3 statements ran"


SLEEPING_GUARD = (
    "-- vezamig:no-transaction\n"
    "-- vezamig:guard SELECT pg_sleep(30) IS NOT NULL AND 'vezamig_test_sleep' <> ''\n"
    "CREATE TABLE never (id int);\n"
)


def up_with_a_sleeping_guard(
    dsn: str, tmp_path: Path, meanwhile: Callable[[subprocess.Popen[str]], None]
) -> tuple[int, str]:
    """`up` of a no-transaction file whose guard sleeps; ``meanwhile`` is done while it
    sleeps. The exit code and stderr."""
    base = write_tree(tmp_path / "sql", {"up/001_x_up.sql": SLEEPING_GUARD})
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    try:
        wait_for(lambda: bool(backends_running(dsn, "vezamig_test_sleep")), what="the guard")
        meanwhile(proc)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_ctrl_c_in_a_guard_of_a_no_transaction_step_names_the_step_and_records_it(
    dsn: str, tmp_path: Path
) -> None:
    code, err = up_with_a_sleeping_guard(dsn, tmp_path, lambda p: p.send_signal(signal.SIGINT))
    assert code == 130, err
    assert "interrupted during up 1 (x); the guard was cancelled and nothing was changed" in err
    assert backends_running(dsn, "vezamig_test_sleep") == []
    assert applied_versions(dsn) == []
    assert [(r["version"], r["outcome"], r["message"]) for r in history(dsn)] == [
        (1, "failed", "interrupted")
    ]


def test_a_guard_cancelled_from_another_session_fails_the_step_with_a_history_row(
    dsn: str, tmp_path: Path
) -> None:
    def cancel(_: subprocess.Popen[str]) -> None:
        [pid] = backends_running(dsn, "vezamig_test_sleep")
        execute(dsn, f"SELECT pg_cancel_backend({pid})")

    code, err = up_with_a_sleeping_guard(dsn, tmp_path, cancel)
    assert code == EXIT_STEP_FAILED, err  # not 5: the connection is fine
    assert "up 1 (x) failed before it started: its guard was cancelled" in err
    assert applied_versions(dsn) == []
    [row] = history(dsn)
    assert (row["version"], row["outcome"]) == (1, "failed")


def test_a_no_transaction_file_that_does_not_parse_is_refused_before_anything_runs(
    dsn: str, tmp_path: Path
) -> None:
    bad = (
        "-- vezamig:no-transaction\n"
        "CREATE TABLE a (id int);\n"
        "CREATE INDEX CONCURRENTLY i ON a (id;\n"
    )
    # Refused with the plan, not when its step is reached: the step before it (0) is
    # not run either (it was committed, and the exit 2 read as "nothing changed").
    first = {"up/1_first_up.sql": "CREATE TABLE first (id int);\n"}
    base = write_tree(tmp_path / "sql", {**first, "up/002_bad_up.sql": bad})
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_USAGE, result
    assert f"{base / 'up/002_bad_up.sql'}:3:37: syntax error" in result.stderr
    assert "nothing was changed" in result.stderr
    assert query(dsn, "SELECT to_regclass('a') IS NULL, to_regclass('first') IS NULL") == [
        (True, True)
    ]
    assert applied_versions(dsn) == []
    assert history(dsn) == []


def test_begin_commit_in_a_no_transaction_file_is_refused_before_anything_runs(
    dsn: str, tmp_path: Path
) -> None:
    # vezamig's progress row after the first UPDATE would commit the author's block
    # half-way: 500 created from nothing when the second UPDATE fails its CHECK.
    body = (
        "-- vezamig:no-transaction\n"
        "CREATE TABLE acct (id int PRIMARY KEY, bal int CHECK (bal >= 0));\n"
        "BEGIN;\nUPDATE acct SET bal = bal + 500 WHERE id = 2;\nCOMMIT;\n"
    )
    base = write_tree(tmp_path / "sql", {"up/001_move_up.sql": body})
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_USAGE, result
    path = base / "up/001_move_up.sql"
    assert f"{path}:3: `BEGIN` in a non-transactional file" in result.stderr
    assert f"{path}:5: `COMMIT` in a non-transactional file" in result.stderr
    assert query(dsn, "SELECT to_regclass('acct') IS NULL") == [(True,)]
    assert applied_versions(dsn) == [] and history(dsn) == []


def test_a_failed_create_index_concurrently_says_to_drop_the_invalid_index_it_left(
    dsn: str, tmp_path: Path
) -> None:
    # The index is left INVALID (enforcing nothing); with IF NOT EXISTS a new run after
    # `repair --rolled-back` would skip it and record the version applied.
    body = (
        "-- vezamig:no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_email ON t (email);\n"
    )
    base = write_tree(tmp_path / "sql", {"up/001_t_up.sql": CREATE_T, "up/002_i_up.sql": body})
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_STEP_FAILED, result
    assert "leaves an INVALID index behind" in result.stderr
    assert "DROP INDEX CONCURRENTLY IF EXISTS public.t_email" in result.stderr
    assert query(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_email'::regclass") == [
        (False,)
    ]
    # The refusal of the next run quotes the progress row, hint included.
    refused = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert refused.returncode == EXIT_REFUSED, refused
    assert "DROP INDEX CONCURRENTLY IF EXISTS public.t_email" in refused.stderr


def test_a_create_index_concurrently_that_finds_a_valid_index_of_its_name_says_not_to_drop_it(
    dsn: str, tmp_path: Path
) -> None:
    """Found by an audit: "already exists" (42P07) created nothing, yet the message and
    the history row said to drop the index of that name, a valid one made by hand."""
    body = "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY idx_t_id ON t (id);\n"
    base = write_tree(tmp_path / "sql", {"up/001_t_up.sql": CREATE_T, "up/002_i_up.sql": body})
    assert run_cli(["up", "--to", "1", "--dir", str(base), "-d", dsn]).returncode == EXIT_OK
    execute(dsn, "CREATE INDEX idx_t_id ON t (id)")
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_STEP_FAILED, result
    assert '42P07 relation "idx_t_id" already exists' in result.stderr
    assert "INVALID" not in result.stderr and "DROP INDEX" not in result.stderr
    assert "INVALID" not in history(dsn)[-1]["message"]
    assert indexes(dsn) == {"idx_t_id": True}


def test_the_invalid_index_hint_names_the_schema_the_file_s_search_path_led_to(
    dsn: str, tmp_path: Path
) -> None:
    """Found by an audit: after `SET search_path = s1` in the file the hint said
    `DROP … IF EXISTS t_v`, which, pasted in psql, dropped a valid public.t_v."""
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_base_up.sql": (
                "CREATE SCHEMA s1; CREATE TABLE s1.t (v int); INSERT INTO s1.t VALUES (1), (1);\n"
                "CREATE TABLE w (v int); CREATE UNIQUE INDEX t_v ON w (v);\n"
            ),
            "up/002_x_up.sql": (
                "-- vezamig:no-transaction\nSET search_path = s1;\n"
                "CREATE UNIQUE INDEX CONCURRENTLY t_v ON t (v);\n"
            ),
        },
    )
    result = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_STEP_FAILED, result
    assert "s1.t_v is INVALID now; drop it (DROP INDEX CONCURRENTLY IF EXISTS s1.t_v)" in (
        result.stderr
    )
    assert "IF EXISTS t_v)" not in result.stderr


@pytest.mark.parametrize("search_path", ["", "SET search_path = s2;\n"])
def test_a_drop_index_concurrently_that_did_not_finish_names_the_invalid_index_left(
    dsn: str, tmp_path: Path, search_path: str
) -> None:
    """Found by an audit: stopped while it waited for an older transaction, it left the
    index INVALID, and the message only said that no statement ran. Named with its
    schema: after the file's `SET search_path`, a bare name pasted in psql would skip."""
    schema = "s2" if search_path else "public"
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_t_up.sql": (
                f"CREATE SCHEMA IF NOT EXISTS {schema};\nCREATE TABLE {schema}.t (v int);\n"
                f"CREATE INDEX idx_t_v ON {schema}.t (v);\n"
            ),
            "up/002_x_up.sql": "-- vezamig:no-transaction\nSELECT 1;\n",
            "down/002_x_down.sql": (
                "-- vezamig:no-transaction\n"
                f"{search_path}DROP INDEX CONCURRENTLY IF EXISTS idx_t_v;\n"
            ),
        },
    )
    assert run_cli(["up", "--dir", str(base), "-d", dsn]).returncode == EXIT_OK
    # An open transaction that read t: the DROP marks the index INVALID, then waits.
    with held_elsewhere(dsn, f"BEGIN; SELECT count(*) FROM {schema}.t"):
        result = run_cli(
            ["down", "--yes", "--dir", str(base), "-d", dsn, "--statement-timeout", "1s"]
        )
    assert result.returncode == EXIT_STEP_FAILED, result
    assert query(
        dsn, f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{schema}.idx_t_v'::regclass"
    ) == [(False,)]
    assert (
        "a DROP INDEX CONCURRENTLY that did not finish can leave its index behind INVALID "
        f"(no query uses it, every write still updates it): {schema}.idx_t_v is INVALID now; "
        f"run DROP INDEX CONCURRENTLY IF EXISTS {schema}.idx_t_v again before you repair"
    ) in result.stderr
    assert tracking(dsn) == {1: False, 2: True}


SLOW = """\
-- vezamig:no-transaction
CREATE TABLE a (id int);
SELECT pg_sleep(300) AS vezamig_test_sleep;
CREATE TABLE b (id int);
"""


def test_status_says_a_dirty_version_may_be_a_step_still_running(dsn: str, tmp_path: Path) -> None:
    """Found by an audit: while a run's non-transactional step runs, `status` showed it
    dirty as if a run had left it so; it now says a run holds the lock, and who."""
    base = write_tree(tmp_path / "sql", {"up/001_slow_up.sql": SLOW})
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    try:
        wait_for(
            lambda: bool(backends_running(dsn, "vezamig_test_sleep")),
            what="the second statement to start",
        )
        during = vz(dsn, base, "status")
        assert during.returncode == EXIT_OK, during
        assert "dirty" in during.stdout
        assert "note: a vezamig run is in progress (pid " in during.stderr
        assert "application vezamig up" in during.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        for pid in backends_running(dsn, "vezamig_test_sleep"):
            execute(dsn, f"SELECT pg_terminate_backend({pid})")
    wait_for(
        lambda: query(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)],
        what="the killed run's session to end",
    )
    after = vz(dsn, base, "status")  # dirty, left by a run that is gone: no such note
    assert "dirty" in after.stdout and "in progress" not in after.stderr


def test_a_killed_run_leaves_the_version_dirty_with_its_progress_in_the_history(
    dsn: str, tmp_path: Path
) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_slow_up.sql": SLOW})
    path = base / "up/001_slow_up.sql"
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    try:
        wait_for(
            lambda: bool(backends_running(dsn, "vezamig_test_sleep")),
            what="the second statement to start",
        )
        # While statement 2 runs, the record already tells the truth.
        assert tracking(dsn) == {1: True}
        assert history(dsn)[-1]["message"] == (
            f"1 of 3 statements ran (last: {path}:2); the run stopped while statement 2 "
            f"({path}:3) ran or was about to: it may have done part of its work"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # also closes its pipes
        for pid in backends_running(dsn, "vezamig_test_sleep"):
            execute(dsn, f"SELECT pg_terminate_backend({pid})")

    assert tracking(dsn) == {1: True}
    assert history(dsn)[-1]["outcome"] == "failed"
    assert query(dsn, "SELECT to_regclass('b') IS NULL") == [(True,)]
    status = run_cli(["status", "--dir", str(base), "-d", dsn])
    assert "dirty" in status.stdout
    refused = run_cli(["up", "--dir", str(base), "-d", dsn])
    assert refused.returncode == EXIT_REFUSED, refused
    assert "Last recorded progress: 1 of 3 statements ran" in refused.stderr


def test_statement_timeout_applies_to_each_statement_of_a_no_transaction_step(
    dsn: str, tmp_path: Path
) -> None:
    up = "-- vezamig:no-transaction\nCREATE TABLE a (id int);\nSELECT pg_sleep(60);\n"
    base = write_tree(tmp_path / "sql", {"up/001_slow_up.sql": up})
    result = run_cli(["up", "--statement-timeout", "200ms", "--dir", str(base), "-d", dsn])
    assert result.returncode == EXIT_STEP_FAILED, result
    assert "57014" in result.stderr and "statement_timeout is 200 ms" in result.stderr
    assert f"statement that failed: 2 of 2 at {base / 'up/001_slow_up.sql'}:3" in result.stderr
    assert tracking(dsn) == {1: True}


def test_ctrl_c_cancels_the_running_statement_and_leaves_the_version_dirty(
    dsn: str, tmp_path: Path
) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_slow_up.sql": SLOW})
    path = base / "up/001_slow_up.sql"
    proc = start_cli(["up", "--table", "ops.migrations", "--dir", str(base), "-d", dsn])
    try:
        wait_for(lambda: bool(backends_running(dsn, "vezamig_test_sleep")), what="statement 2")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert f"statement that failed (interrupted): 2 of 3 at {path}:3" in err
    opts = f"-d {shlex.quote(dsn)} --dir {base} --table ops.migrations"
    assert (
        f"`vezamig repair --applied 1 {opts}` if you finished the "
        f"step by hand, or `vezamig repair --rolled-back 1 {opts}` "
        "if you undid it"
    ) in err
    assert backends_running(dsn, "vezamig_test_sleep") == []  # cancelled on the server
    assert query(dsn, "SELECT version, dirty FROM ops.migrations") == [(1, True)]
    row = history(dsn, "ops.migrations_history")[-1]
    assert row["message"] == (
        f"statement 2 of 3 failed (interrupted) at {path}:3; ran: {path}:2; not run: {path}:4"
    )


def test_a_lost_connection_leaves_the_version_dirty_and_says_so(dsn: str, tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_slow_up.sql": SLOW})
    path = base / "up/001_slow_up.sql"
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    try:
        wait_for(lambda: bool(backends_running(dsn, "vezamig_test_sleep")), what="statement 2")
        for pid in backends_running(dsn, "vezamig_test_sleep"):
            execute(dsn, f"SELECT pg_terminate_backend({pid})")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == EXIT_STEP_FAILED, err
    assert f"{path}:3: connection lost" in err
    assert "whether the running statement finished is unknown" in err
    assert tracking(dsn) == {1: True}
    # Nothing could be written after the loss: the last progress recorded stands.
    assert history(dsn)[-1]["message"] == (
        f"1 of 3 statements ran (last: {path}:2); the run stopped while statement 2 "
        f"({path}:3) ran or was about to: it may have done part of its work"
    )


def test_the_refusal_quotes_the_latest_progress_of_a_version_that_failed_twice(
    dsn: str, tmp_path: Path
) -> None:
    up = (
        "-- vezamig:no-transaction\n"
        "CREATE INDEX CONCURRENTLY a ON t (id);\n"
        "CREATE INDEX CONCURRENTLY b ON t (id);\n"
    )
    base = write_tree(tmp_path / "sql", {"up/001_ab_up.sql": up})
    path = base / "up/001_ab_up.sql"
    execute(dsn, "CREATE TABLE t (id int); CREATE INDEX a ON t (id)")
    fail_halfway(dsn, base)  # at statement 1: a exists
    assert vz(dsn, base, "repair", "--rolled-back", "1", "--yes").returncode == EXIT_OK
    execute(dsn, "DROP INDEX a; CREATE INDEX b ON t (id)")
    fail_halfway(dsn, base)  # now at statement 2: b exists

    refused = vz(dsn, base, "up")
    assert refused.returncode == EXIT_REFUSED, refused
    assert f"Last recorded progress: statement 2 of 2 failed at {path}:3" in refused.stderr


def test_a_second_signal_while_the_step_s_history_row_is_written_still_names_the_step(
    dsn: str, tmp_path: Path
) -> None:
    # The first SIGTERM cancels the body; the failed row's INSERT then waits on a lock
    # another session holds, and a second SIGTERM stops that: the message must still
    # name the step (it once said only "terminated (SIGTERM)").
    body = "SELECT pg_sleep(30) AS vezamig_test_sleep;\nCREATE TABLE x (id int);\n"
    base = write_tree(tmp_path / "sql", {"up/001_a_up.sql": "CREATE TABLE a ();\n",
                                         "up/002_s_up.sql": body})  # fmt: skip
    assert run_cli(["up", "--dir", str(base), "-d", dsn, "--to", "1"]).returncode == EXIT_OK
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    holder = connect(dsn)
    try:
        wait_for(lambda: bool(backends_running(dsn, "vezamig_test_sleep")), what="the body")
        holder.execute("BEGIN; LOCK TABLE schema_migrations_history IN EXCLUSIVE MODE")
        proc.send_signal(signal.SIGTERM)
        wait_for(
            lambda: bool(backends_running(dsn, "synchronous_commit = local")),
            what="the failed row's INSERT to wait",
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "interrupted during up 2 (s); the running statement was cancelled" in err
    assert "may be missing from schema_migrations_history" in err
    assert applied_versions(dsn) == [1]


def test_a_signal_while_a_no_transaction_step_records_its_end_still_ends_it_clean(
    dsn: str, tmp_path: Path
) -> None:
    # Every statement ran; the cancel hit vezamig's own last UPDATE (waiting on a row
    # lock): the end is recorded anyway, then the run stops. It was left dirty.
    notx = "-- vezamig:no-transaction\nSELECT pg_sleep(1) AS vezamig_test_sleep;\n"
    files = {
        "up/001_a_up.sql": "CREATE TABLE a ();\n",
        "up/002_n_up.sql": notx,
        "up/003_later_up.sql": "CREATE TABLE later ();\n",
    }
    base = write_tree(tmp_path / "sql", files)
    assert run_cli(["up", "--dir", str(base), "-d", dsn, "--to", "1"]).returncode == EXIT_OK
    proc = start_cli(["up", "--dir", str(base), "-d", dsn])
    holder = connect(dsn)
    try:
        wait_for(lambda: bool(backends_running(dsn, "vezamig_test_sleep")), what="the body")
        holder.execute("BEGIN; SELECT * FROM schema_migrations WHERE version = 2 FOR UPDATE")
        wait_for(lambda: bool(backends_running(dsn, "dirty = false")), what="the step's end")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
    finally:
        holder.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "up 2 (n) ran; it finished first and is applied; no later step was run" in err
    assert tracking(dsn) == {1: False, 2: False}
    assert query(dsn, "SELECT to_regclass('later') IS NULL") == [(True,)]


def test_a_long_file_that_fails_late_names_its_statements_by_their_ends(
    dsn: str, tmp_path: Path
) -> None:
    """20,000 statements must not make a 500 KB message and history row: a run of more
    than ten is given by its count, first and last line."""
    body = "".join(f"CREATE TABLE t{i} ();\n" for i in range(24)) + "SELECT 1/0;\n"
    body += "".join(f"CREATE TABLE u{i} ();\n" for i in range(12))
    base = write_tree(tmp_path, {"up/001_many_up.sql": "-- vezamig:no-transaction\n" + body})
    r = vz(dsn, base, "up")
    assert r.returncode == EXIT_STEP_FAILED, r
    path = base / "up" / "001_many_up.sql"
    assert f"statements that ran: 24 statements, {path}:2 to {path}:25" in r.stderr
    assert f"statements not run: 12 statements, {path}:27 to {path}:38" in r.stderr
    assert f"statement that failed: 25 of 37 at {path}:26" in r.stderr
    (row,) = [h for h in history(dsn) if h["version"] == 1]
    assert len(row["message"]) < 5 * len(str(path)) + 200, row["message"]  # not per statement


# ---- the database refuses the dirty mark ---------------------------------------------


def test_a_dirty_mark_the_database_refuses_fails_the_step_before_its_first_statement(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path, up__003_later_up="CREATE TABLE later ();\n")
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    execute(
        dsn,
        "CREATE FUNCTION no_marks() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'audit says no' USING HINT = 'ask the DBA'; END$$;"
        " CREATE TRIGGER no_marks AFTER INSERT ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION no_marks()",
    )
    result = vz(dsn, base, "up")
    assert result.returncode == EXIT_STEP_FAILED, result
    assert (
        "up 2 (email_indexes) failed before its first statement: the database refused to "
        "record it as dirty; nothing of it was run"
    ) in result.stderr
    assert "P0001 audit says no" in result.stderr
    assert "hint: ask the DBA" in result.stderr
    assert "this run changed nothing before it; not run: 3 (later); current version 1" in (
        result.stderr
    )
    assert tracking(dsn) == {1: False}
    assert indexes(dsn) == {}
    last = history(dsn)[-1]
    assert (last["version"], last["outcome"]) == (2, "failed")
    assert last["message"] == "not started: recording it dirty failed: P0001 audit says no"


def test_a_role_that_may_not_write_the_dirty_mark_is_told_the_grant_and_what_ran(
    dsn: str, tmp_path: Path
) -> None:
    """INSERT … RETURNING needs SELECT on the history: without it the mark is refused,
    after the run's earlier steps were applied."""
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK  # the tables, as postgres
    execute(dsn, "DELETE FROM schema_migrations; DROP TABLE t")
    execute(
        dsn,
        "DROP ROLE IF EXISTS vz_no_select; CREATE ROLE vz_no_select LOGIN;"
        " GRANT CREATE ON SCHEMA public TO vz_no_select;"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON schema_migrations TO vz_no_select;"
        " GRANT INSERT, UPDATE, DELETE ON schema_migrations_history TO vz_no_select",
    )
    try:
        result = vz(f"{dsn} user=vz_no_select", base, "up")
        assert result.returncode == EXIT_USAGE, result
        assert "ok up   1 accounts" in result.stdout
        assert (
            "up 2 (email_indexes) was not started: the database role may not write "
            "vezamig's tracking tables (permission denied for table schema_migrations_history)"
        ) in result.stderr
        assert 'GRANT SELECT ON schema_migrations, schema_migrations_history TO "vz_no_select"' in (
            result.stderr
        )
        assert "this run applied 1 (accounts) before it; current version 1" in result.stderr
        assert tracking(dsn) == {1: False}
        assert indexes(dsn) == {}
    finally:
        execute(
            dsn,
            "DROP OWNED BY vz_no_select; DROP ROLE vz_no_select",
        )


@pytest.mark.parametrize(
    ("direction", "missing"),
    [
        ("up", "UPDATE ON schema_migrations_history"),  # the progress and the end
        ("up", "UPDATE ON schema_migrations"),  # the clean mark
        ("down", "DELETE ON schema_migrations"),  # the end of a rollback
        ("down", "UPDATE ON schema_migrations_history"),
    ],
)
def test_a_role_that_may_mark_but_not_finish_a_no_transaction_step_is_refused_before_it_runs(
    dsn: str, tmp_path: Path, direction: str, missing: str
) -> None:
    """Found by an audit: with INSERT but no UPDATE on the history, every statement
    ran, then the step stayed dirty with a history row saying none had, naming an
    index to drop before repair. The writes its end needs are tried first."""
    up = (
        "-- vezamig:no-transaction\n"
        "CREATE INDEX CONCURRENTLY idx_t_email ON t (email);\n"
        "CREATE INDEX CONCURRENTLY idx_t_id_email ON t (id, email);\n"
    )
    base = tree(tmp_path, up__002_email_indexes_up=up)
    assert vz(dsn, base, "up", "--to", "1" if direction == "up" else "2").returncode == EXIT_OK
    before = (tracking(dsn), indexes(dsn), len(history(dsn)))
    role = "vz_no_finish"
    execute(
        dsn,
        f"DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; ALTER TABLE t OWNER TO {role};"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON schema_migrations,"
        f" schema_migrations_history TO {role}; REVOKE {missing} FROM {role}",
    )
    try:
        args = ["up"] if direction == "up" else ["down", "--yes"]
        result = vz(f"{dsn} user={role}", base, *args)
        assert result.returncode == EXIT_USAGE, result
        assert (
            f"{direction} 2 (email_indexes) was not started: the database role may not write "
            "vezamig's tracking tables (permission denied for table "
            f"{missing.split(' ON ')[1]}); nothing of it was run"
        ) in result.stderr
        assert (
            "GRANT SELECT, INSERT, UPDATE, DELETE ON schema_migrations,"
            f' schema_migrations_history TO "{role}"'
        ) in result.stderr
        assert (tracking(dsn), indexes(dsn), len(history(dsn))) == before
    finally:
        execute(dsn, f"DROP OWNED BY {role}; DROP ROLE {role}")
