"""What a migration's body leaves in the session must not change later steps or the
step's own bookkeeping (README, One step): durability of the COMMIT, temp tables,
prepared statements, cursors, the run lock. Through the CLI, on a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import applied_versions, query, run_cli, table_exists, write_tree

from vezamig.errors import EXIT_LOCKED, EXIT_OK, EXIT_STEP_FAILED, EXIT_USAGE


def vz(dsn: str, base: Path, *args: str) -> tuple[int, str, str]:
    r = run_cli([*args, "--dir", str(base), "-d", dsn])
    return r.returncode, r.stdout, r.stderr


def test_a_bodys_asynchronous_commit_does_not_reach_the_steps_commit(
    dsn: str, tmp_path: Path
) -> None:
    """`SET LOCAL synchronous_commit = off` for a backfill would make the COMMIT that
    records the version asynchronous: a crash could undo a version reported applied.
    A deferred trigger sees the setting the COMMIT runs with."""
    body = """\
CREATE TABLE commit_log (setting text);
CREATE FUNCTION log_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO commit_log VALUES (current_setting('synchronous_commit'));
  RETURN NULL;
END $$;
CREATE TABLE bulk (id int);
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON bulk
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION log_commit();
SET LOCAL synchronous_commit = off;
INSERT INTO bulk VALUES (1);
"""
    base = write_tree(tmp_path, {"up/001_bulk_up.sql": body})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert query(dsn, "SELECT setting FROM commit_log") == [("on",)]


def test_a_temp_table_of_one_step_does_not_shadow_a_table_in_the_next(
    dsn: str, tmp_path: Path
) -> None:
    base = write_tree(
        tmp_path,
        {
            "up/001_settings_up.sql": "CREATE TABLE settings (k text PRIMARY KEY, v text);\n",
            "up/002_seed_up.sql": (
                "CREATE TEMP TABLE settings (LIKE public.settings);\n"
                "INSERT INTO settings VALUES ('theme', 'dark');\n"
                "INSERT INTO public.settings SELECT * FROM settings;\n"
            ),
            "up/003_more_up.sql": "INSERT INTO settings VALUES ('tz', 'UTC');\n",
        },
    )
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert query(dsn, "SELECT k FROM public.settings ORDER BY k") == [("theme",), ("tz",)]


@pytest.mark.parametrize(
    "statement",
    [
        "PREPARE p AS SELECT 1;",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1;",
        "CREATE TEMP TABLE scratch AS SELECT 1 AS one;",
    ],
    ids=["prepare", "cursor-with-hold", "temp-table"],
)
def test_what_a_step_leaves_in_the_session_is_gone_before_the_next(
    dsn: str, tmp_path: Path, statement: str
) -> None:
    base = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": f"{statement}\nCREATE TABLE a ();\n",
            "up/002_b_up.sql": f"{statement}\nCREATE TABLE b ();\n",
        },
    )
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert applied_versions(dsn) == [1, 2]


def test_a_roundtrip_up_again_does_not_meet_the_first_ups_temp_table(tmp_path: Path) -> None:
    base = write_tree(
        tmp_path,
        {
            "up/001_x_up.sql": (
                "CREATE TABLE x (id int);\nCREATE TEMP TABLE stage AS SELECT 1 AS id;\n"
                "INSERT INTO x SELECT id FROM stage;\n"
            ),
            "down/001_x_down.sql": "DROP TABLE x;\n",
        },
    )
    r = run_cli(["roundtrip", "--dir", str(base)], timeout=180)
    assert r.returncode == EXIT_OK, r


def test_discard_all_in_a_non_transactional_file_is_refused_with_the_plan(
    dsn: str, tmp_path: Path
) -> None:
    """It would release the run lock while the step runs: another run could get in."""
    base = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();\n",
            "up/002_b_up.sql": (
                "-- vezamig:no-transaction\nCREATE TABLE b ();\nDISCARD ALL;\nCREATE TABLE c ();\n"
            ),
        },
    )
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_USAGE, err
    assert "002_b_up.sql:3: `DISCARD ALL` in a non-transactional file" in err
    assert "run lock" in err
    assert not table_exists(dsn, "a") and not table_exists(dsn, "b")
    code, _, err = vz(dsn, base, "verify")
    assert code == EXIT_USAGE and "DISCARD ALL" in err


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("SET client_encoding = 'LATIN1'", "could not be sent"),
        ("SET NAMES 'WIN1252'", "could not be sent"),
        ("SET standard_conforming_strings = off", "write such strings as E'…' instead"),
    ],
)
def test_a_setting_that_changes_how_a_non_transactional_file_is_read_is_refused(
    dsn: str, tmp_path: Path, setting: str, said: str
) -> None:
    """vezamig split the file beforehand and sends each statement as UTF-8: a body that
    changed the encoding made the next statement with a `€` a Python traceback, and one
    that turned standard_conforming_strings off could hide statements in a string."""
    body = f"-- vezamig:no-transaction\n{setting};\nCREATE TABLE e (x text);\n"
    body += "INSERT INTO e VALUES ('5 €');\n"
    base = write_tree(tmp_path, {"up/001_e_up.sql": body})
    for args in (["up"], ["verify"]):
        code, _, err = vz(dsn, base, *args)
        assert code == EXIT_USAGE, (args, err)
        assert f"001_e_up.sql:2: `{setting}` in a non-transactional file" in err
        assert said in err
    assert not table_exists(dsn, "e")
    # Harmless values, SET LOCAL (no effect outside a transaction) and transactional
    # files are left alone.
    fine = {
        "up/001_e_up.sql": "-- vezamig:no-transaction\nSET client_encoding = 'UTF8';\n"
        "SET standard_conforming_strings = on;\nSET LOCAL client_encoding = 'LATIN1';\n"
        "CREATE TABLE e (x text);\n",
        "up/002_f_up.sql": f"{setting};\nCREATE TABLE f (x text);\n",
    }
    base = write_tree(tmp_path / "fine", fine)
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert applied_versions(dsn) == [1, 2]


def test_a_statement_that_cannot_run_in_a_transaction_names_the_directive_to_use(
    dsn: str, tmp_path: Path
) -> None:
    base = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\n",
            "up/002_idx_up.sql": "-- index\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        },
    )
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_STEP_FAILED, err
    assert "002_idx_up.sql:2:1: 25001" in err
    assert "`-- vezamig:no-transaction`" in err


def test_a_psql_meta_command_is_named_as_such(dsn: str, tmp_path: Path) -> None:
    base = write_tree(tmp_path, {"up/001_a_up.sql": "\\set ON_ERROR_STOP on\nSELECT 1;\n"})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_STEP_FAILED, err
    assert "psql meta-command" in err
    code, _, err = vz(dsn, base, "verify")
    assert code == EXIT_USAGE and "psql meta-command" in err


@pytest.mark.parametrize(
    ("body", "hint", "not_hint"),
    [
        ("DISCARD ALL;\n", "DISCARD TEMP", "vezamig:no-transaction"),
        ("DO $$ BEGIN EXECUTE 'VACUUM t'; END $$;\n", None, "vezamig:no-transaction"),
    ],
    ids=["discard-all", "inside-a-do-block"],
)
def test_no_directive_is_suggested_where_it_would_not_help(
    dsn: str, tmp_path: Path, body: str, hint: str | None, not_hint: str
) -> None:
    base = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE t (id int);\n" + body})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_STEP_FAILED, err
    assert "25001" in err
    assert not_hint not in err
    if hint:
        assert hint in err


# ---- a body that sabotages the bookkeeping ---------------------------------------------

SKIP = "CREATE FUNCTION vz_skip() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;\n"


def hidden(statement: str) -> str:
    """``statement`` run from a DO block, where the check of the plan does not look."""
    return f"DO $do$BEGIN EXECUTE $x${statement}$x$; END$do$;\n"


SABOTAGE = {
    "up, a trigger on the tracking table": (
        "up",
        SKIP
        + hidden(
            "CREATE TRIGGER skip BEFORE INSERT ON schema_migrations"
            " FOR EACH ROW EXECUTE FUNCTION vz_skip()"
        ),
        "0 row(s) of schema_migrations changed where vezamig writes one",
    ),
    "up, a trigger on the history": (
        "up",
        SKIP
        + hidden(
            "CREATE TRIGGER skip BEFORE INSERT ON schema_migrations_history"
            " FOR EACH ROW EXECUTE FUNCTION vz_skip()"
        ),
        "0 row(s) of schema_migrations_history changed where vezamig writes one",
    ),
    "down, a trigger on the tracking table": (
        "down",
        SKIP
        + hidden(
            "CREATE TRIGGER skip BEFORE DELETE ON schema_migrations"
            " FOR EACH ROW EXECUTE FUNCTION vz_skip()"
        ),
        "0 row(s) of schema_migrations changed where vezamig writes one",
    ),
}


@pytest.mark.parametrize(("direction", "body", "said"), SABOTAGE.values(), ids=list(SABOTAGE))
def test_a_body_that_makes_the_bookkeeping_skip_its_row_fails_the_step(
    dsn: str, tmp_path: Path, direction: str, body: str, said: str
) -> None:
    """Checked before the run (README, Tracking tables), such an object can still come
    from the step itself: the bookkeeping must change exactly its one row, or the step
    fails, rolled back, instead of being reported done and not recorded."""
    files = {
        "up/001_a_up.sql": "CREATE TABLE a ();\n",
        "up/002_b_up.sql": ("CREATE TABLE b ();\n" + body) if direction == "up" else "SELECT 1;\n",
        "up/003_c_up.sql": "CREATE TABLE c ();\n",
    }
    if direction == "down":
        files["down/003_c_down.sql"] = "DROP TABLE c;\n" + body
    base = write_tree(tmp_path, files)
    if direction == "down":
        assert vz(dsn, base, "up")[0] == EXIT_OK
        code, out, err = vz(dsn, base, "down", "--yes")
        failed, recorded = "down 3 (c) failed and was rolled back", [1, 2, 3]
    else:
        assert vz(dsn, base, "up", "--to", "1")[0] == EXIT_OK
        code, out, err = vz(dsn, base, "up")
        failed, recorded = "up 2 (b) failed and was rolled back", [1]
    assert code == EXIT_STEP_FAILED, (out, err)
    assert failed in err
    assert f"vezamig's own bookkeeping did not take: {said}" in err
    assert applied_versions(dsn) == recorded
    assert query(dsn, "SELECT count(*) FROM pg_trigger WHERE tgname = 'skip'") == [(0,)]
    assert table_exists(dsn, "c") == (direction == "down")
    assert not table_exists(dsn, "b") or direction == "down"


def test_a_no_transaction_body_that_makes_its_end_record_skip_stays_dirty(
    dsn: str, tmp_path: Path
) -> None:
    body = (
        "-- vezamig:no-transaction\nCREATE TABLE b ();\n"
        + SKIP
        + hidden(
            "CREATE TRIGGER skip BEFORE UPDATE ON schema_migrations"
            " FOR EACH ROW EXECUTE FUNCTION vz_skip()"
        )
    )
    base = write_tree(tmp_path, {"up/001_b_up.sql": body, "up/002_c_up.sql": "SELECT 1;\n"})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_STEP_FAILED, err
    assert "up 1 (b) failed part-way (non-transactional)" in err
    assert "vezamig's own bookkeeping did not take: 0 row(s) of schema_migrations" in err
    assert "every statement ran; recording the end of the step failed" in err
    assert "version 1 is now dirty" in err
    assert query(dsn, "SELECT version, dirty FROM schema_migrations") == [(1, True)]


def test_the_bookkeeping_keeps_the_servers_clock_whatever_search_path_the_body_sets(
    dsn: str, tmp_path: Path
) -> None:
    """A test schema's now() (a frozen clock) ahead of pg_catalog in search_path must not
    date vezamig's records, nor break its duration arithmetic."""
    body = """\
CREATE SCHEMA app;
CREATE FUNCTION app.now() RETURNS timestamptz LANGUAGE sql
  AS $$ SELECT '2000-01-01'::timestamptz $$;
CREATE FUNCTION app.clock_timestamp() RETURNS timestamptz LANGUAGE sql
  AS $$ SELECT '1999-01-01'::timestamptz $$;
SET search_path = app, pg_catalog, public;
"""
    base = write_tree(tmp_path, {"up/001_clock_up.sql": body, "up/002_next_up.sql": "SELECT 1;\n"})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert query(
        dsn,
        "SELECT bool_and(applied_at > now() - interval '1 hour') FROM schema_migrations",
    ) == [(True,)]
    assert query(
        dsn,
        "SELECT bool_and(started_at > now() - interval '1 hour') FROM schema_migrations_history",
    ) == [(True,)]


def test_a_body_that_releases_the_run_lock_stops_the_run_after_its_step(
    dsn: str, tmp_path: Path
) -> None:
    """Without the lock a second run could plan and apply the same versions at once."""
    base = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "SELECT pg_advisory_unlock_all();\nCREATE TABLE a ();\n",
            "up/002_b_up.sql": "CREATE TABLE b ();\n",
        },
    )
    code, out, err = vz(dsn, base, "up")
    assert code == EXIT_LOCKED, err
    assert "ok up   1 a" in out
    assert "up 1 (a) released vezamig's run lock (pg_advisory_unlock_all()?); it is applied" in err
    assert "no later step was run" in err
    assert "this run applied 1 (a); not run: 2 (b); current version 1" in err
    assert applied_versions(dsn) == [1]
    assert not table_exists(dsn, "b")
    # A body that only mentions it, and keeps the lock, changes nothing.
    quiet = write_tree(
        tmp_path / "q", {"up/001_a_up.sql": "-- no pg_advisory_unlock_all() here\nSELECT 1;\n"}
    )
    assert vz(dsn, quiet, "up", "--table", "other")[0] == EXIT_OK


@pytest.mark.parametrize("lock", ["", "-- vezamig:lock t\n"])
def test_set_transaction_after_the_steps_guards_is_told_why_it_fails(
    dsn: str, tmp_path: Path, lock: str
) -> None:
    query(dsn, "CREATE TABLE t ()")
    body = (
        f"{lock}-- vezamig:guard SELECT true\n"
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE s ();\n"
    )
    base = write_tree(tmp_path, {"up/001_s_up.sql": body})
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_STEP_FAILED, err
    assert "must be called before any query" in err
    assert "runs its `vezamig:lock` and guards first" in err
    assert "vezamig:no-transaction" not in err


def test_commit_prepared_runs_in_a_non_transactional_file(pg_bindir: Path, tmp_path: Path) -> None:
    """It ends a transaction prepared earlier, not the session's: nothing of vezamig's."""
    from vezamig.cluster import ThrowawayCluster

    with ThrowawayCluster(pg_bindir, settings={"max_prepared_transactions": "2"}) as cluster:
        dsn = cluster.conninfo()
        query(dsn, "CREATE TABLE t (x int)")
        query(dsn, "BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'left_over'")
        body = "-- vezamig:no-transaction\nCOMMIT PREPARED 'left_over';\n"
        base = write_tree(tmp_path, {"up/001_p_up.sql": body})
        assert vz(dsn, base, "verify")[0] == EXIT_OK
        code, _, err = vz(dsn, base, "up")
        assert code == EXIT_OK, err
        assert query(dsn, "SELECT x FROM t") == [(1,)]


def test_after_a_non_transactional_failure_under_another_role_the_current_version_is_told(
    dsn: str, tmp_path: Path
) -> None:
    query(dsn, "DROP ROLE IF EXISTS vz_nopriv; CREATE ROLE vz_nopriv")
    try:
        body = "-- vezamig:no-transaction\nCREATE TABLE b ();\nSET ROLE vz_nopriv;\nSELECT 1/0;\n"
        base = write_tree(
            tmp_path, {"up/001_b_up.sql": body, "up/002_c_up.sql": "CREATE TABLE c ();\n"}
        )
        code, _, err = vz(dsn, base, "up")
        assert code == EXIT_STEP_FAILED, err
        assert "this run changed nothing before it; not run: 2 (c); current version 1" in err
    finally:
        query(dsn, "DROP ROLE vz_nopriv")


OWN_TABLE_WRITES = [
    "DELETE FROM schema_migrations",
    "TRUNCATE schema_migrations_history",
    "ALTER TABLE schema_migrations ADD COLUMN note text",
    "WITH d AS (DELETE FROM public.schema_migrations RETURNING 1) SELECT count(*) FROM d",
    "DROP TABLE IF EXISTS schema_migrations_history",
    "CREATE TRIGGER t AFTER INSERT ON schema_migrations FOR EACH ROW EXECUTE FUNCTION f()",
]


@pytest.mark.parametrize("statement", OWN_TABLE_WRITES)
def test_a_body_that_writes_or_alters_the_tracking_tables_is_refused_with_the_plan(
    dsn: str, tmp_path: Path, statement: str
) -> None:
    base = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();\n",
            "up/002_b_up.sql": f"CREATE TABLE b ();\n{statement};\n",
        },
    )
    assert vz(dsn, base, "up", "--to", "1")[0] == EXIT_OK
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_USAGE, err
    assert "002_b_up.sql:2: `" in err
    assert "changes vezamig's tracking table public.schema_migrations" in err
    assert not table_exists(dsn, "b")
    assert applied_versions(dsn) == [1]


def test_a_body_that_reads_the_tracking_table_or_writes_a_namesake_elsewhere_runs(
    dsn: str, tmp_path: Path
) -> None:
    body = (
        "CREATE SCHEMA other;\nCREATE TABLE other.schema_migrations (v int);\n"
        "INSERT INTO other.schema_migrations SELECT version FROM schema_migrations;\n"
    )
    base = write_tree(
        tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();\n", "up/002_b_up.sql": body}
    )
    assert vz(dsn, base, "up", "--to", "1")[0] == EXIT_OK
    code, _, err = vz(dsn, base, "up")
    assert code == EXIT_OK, err
    assert query(dsn, "SELECT v FROM other.schema_migrations") == [(1,)]
    # With vezamig's records elsewhere, schema_migrations is any table.
    other = write_tree(
        tmp_path / "o", {"up/001_c_up.sql": "DELETE FROM other.schema_migrations;\n"}
    )
    assert vz(dsn, other, "up", "--table", "other_tracking")[0] == EXIT_OK


def test_set_config_of_client_encoding_in_a_non_transactional_file_is_refused_too(
    dsn: str, tmp_path: Path
) -> None:
    body = (
        "-- vezamig:no-transaction\n"
        "SELECT set_config('client_encoding', 'LATIN1', false);\nSELECT '€';\n"
    )
    base = write_tree(tmp_path, {"up/001_e_up.sql": body})
    for args in (["verify"], ["up"]):
        code, _, err = vz(dsn, base, *args)
        assert code == EXIT_USAGE, (args, err)
        assert "001_e_up.sql:2: `set_config('client_encoding', …)` in a non-transactional" in err
        assert "Traceback" not in err
    assert applied_versions(dsn) == []


def test_a_tracking_table_name_spelled_with_sql_quotes_is_still_found_in_a_body(
    dsn: str, tmp_path: Path
) -> None:
    """`we"ird` is written `"we""ird"` in SQL, and a U&"…" escape can spell any name."""
    for table, statement in (
        ('we"ird', 'DELETE FROM "we""ird"'),
        ("tabl€", 'DELETE FROM U&"tabl\\20AC"'),
    ):
        base = write_tree(
            tmp_path / table.replace('"', "q"),
            {"up/001_a_up.sql": "CREATE TABLE a ();\n", "up/002_b_up.sql": f"{statement};\n"},
        )
        assert vz(dsn, base, "up", "--to", "1", "--table", table)[0] == EXIT_OK
        code, _, err = vz(dsn, base, "up", "--table", table)
        assert code == EXIT_USAGE, (table, err)
        assert "changes vezamig's tracking table" in err
        query(dsn, "DROP TABLE a")
