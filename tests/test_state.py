"""The tracking table and its history (SPEC §4), on a real PostgreSQL."""

from __future__ import annotations

import getpass
import re
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from helpers import (
    execute,
    history,
    migrate,
    query,
    run_cli,
    table_exists,
    user_tables,
    write_tree,
)
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from vezamig.config import Config
from vezamig.db import Connection, connect
from vezamig.errors import EXIT_USAGE, TrackingTableError
from vezamig.state import Tracker


@pytest.fixture
def conn(dsn: str) -> Iterator[Connection]:
    c = connect(dsn)
    yield c
    c.close()


def columns(dsn: str, table: str) -> dict[str, tuple[str, bool]]:
    """column → (type, not null)."""
    rows = query(
        dsn,
        "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (table,),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def record(tracker: Tracker, version: int, name: str = "a", checksum: str = "c0ffee") -> None:
    tracker.conn.execute(tracker.record_sql(version, name, checksum, 12).as_string(tracker.conn))


def test_checking_an_empty_database_creates_nothing(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    assert tracker.check() is False
    assert tracker.applied() == {}
    assert tracker.history_rows() == []
    assert user_tables(dsn) == []


def test_the_first_write_creates_both_tables_with_the_spec_columns(
    conn: Connection, dsn: str
) -> None:
    Tracker(conn, Config()).ensure()
    assert columns(dsn, "schema_migrations") == {
        "version": ("bigint", True),
        "name": ("text", True),
        "checksum": ("text", True),
        "applied_at": ("timestamp with time zone", True),
        "applied_by": ("text", True),
        "duration_ms": ("integer", True),
        "dirty": ("boolean", True),
    }
    assert query(
        dsn,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
        " ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
        " WHERE i.indrelid = 'schema_migrations'::regclass AND i.indisprimary",
    ) == [("version",)]
    assert list(columns(dsn, "schema_migrations_history")) == [
        "id",
        "version",
        "name",
        "direction",
        "outcome",
        "checksum",
        "started_at",
        "duration_ms",
        "db_user",
        "os_user",
        "host",
        "tool_version",
        "message",
    ]
    assert columns(dsn, "schema_migrations_history")["id"] == ("bigint", True)
    assert user_tables(dsn) == ["public.schema_migrations", "public.schema_migrations_history"]


def test_dirty_defaults_to_false(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    tracker.ensure()
    execute(
        dsn,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at, applied_by,"
        " duration_ms) VALUES (1, 'a', 'x', now(), 'me', 0)",
    )
    assert query(dsn, "SELECT dirty FROM schema_migrations") == [(False,)]


def test_ensure_is_idempotent(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    tracker.ensure()
    record(tracker, 1)
    Tracker(conn, Config()).ensure()
    assert list(Tracker(conn, Config()).applied()) == [1]


def test_a_schema_qualified_table_creates_its_schema(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config(table=("ops", "My Migrations")))
    tracker.ensure()
    record(tracker, 3)
    assert user_tables(dsn) == ["ops.My Migrations", "ops.My Migrations_history"]
    assert list(Tracker(conn, Config(table=("ops", "My Migrations"))).applied()) == [3]


def test_applied_rows_carry_who_applied_them(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    tracker.ensure()
    record(tracker, 5, "five", "abc")
    [row] = tracker.applied().values()
    assert (row.version, row.name, row.checksum, row.duration_ms, row.dirty) == (
        5,
        "five",
        "abc",
        12,
        False,
    )
    db_user = query(dsn, "SELECT current_user")[0][0]
    assert db_user in row.applied_by
    assert f"{getpass.getuser()}@{socket.gethostname()}" in row.applied_by
    # ISO 8601 in whole seconds with the session's offset, formatted by the server.
    assert datetime.fromisoformat(row.applied_at).tzinfo is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", row.applied_at)


def test_history_rows_are_append_only_with_increasing_ids(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    for i, outcome in enumerate(["ok", "failed", "refused"]):
        tracker.write_history(
            version=i + 1,
            name="n",
            direction="up",
            outcome=outcome,
            checksum="c",
            duration_ms=1,
            message=f"m{i}",
        )
    rows = history(dsn)
    assert [r["outcome"] for r in rows] == ["ok", "failed", "refused"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    db_user = query(dsn, "SELECT current_user")[0][0]
    assert {r["db_user"] for r in rows} == {db_user}
    assert {r["os_user"] for r in rows} == {getpass.getuser()}
    assert {r["host"] for r in rows} == {socket.gethostname()}
    assert {r["tool_version"] for r in rows} == {"0.1.0"}
    assert [r.outcome for r in tracker.history_rows(limit=2)] == ["refused", "failed"]


def test_history_accepts_only_known_directions_and_outcomes(conn: Connection, dsn: str) -> None:
    Tracker(conn, Config()).ensure()
    with pytest.raises(Exception, match="check constraint"):
        execute(
            dsn,
            "INSERT INTO schema_migrations_history (direction, outcome, started_at)"
            " VALUES ('sideways', 'ok', now())",
        )


def test_a_foreign_table_with_the_same_name_is_never_touched(conn: Connection, dsn: str) -> None:
    execute(dsn, "CREATE TABLE schema_migrations (version bigint NOT NULL, dirty boolean NOT NULL)")
    execute(dsn, "INSERT INTO schema_migrations VALUES (20240101, false)")
    tracker = Tracker(conn, Config())
    with pytest.raises(TrackingTableError) as info:
        tracker.check()
    assert info.value.exit_code == EXIT_USAGE
    text = str(info.value)
    assert "not a vezamig tracking table" in text
    assert "version bigint, dirty boolean" in text
    assert "--table" in text
    with pytest.raises(TrackingTableError):
        tracker.ensure()
    assert user_tables(dsn) == ["public.schema_migrations"]
    assert query(dsn, "SELECT * FROM schema_migrations") == [(20240101, False)]


def test_a_tracking_table_without_its_history_companion_is_an_error(
    conn: Connection, dsn: str
) -> None:
    Tracker(conn, Config()).ensure()
    execute(dsn, "DROP TABLE schema_migrations_history")
    with pytest.raises(TrackingTableError, match="schema_migrations_history is missing"):
        Tracker(conn, Config()).check()
    assert not table_exists(dsn, "schema_migrations_history")


def test_a_reader_sees_tables_another_session_created_after_it_first_looked(
    conn: Connection, dsn: str
) -> None:
    """A run that waited for the run lock must plan from the state the other run left."""
    waiting = Tracker(conn, Config())
    assert waiting.check() is False
    other = connect(dsn)
    try:
        first = Tracker(other, Config())
        first.ensure()
        record(first, 1)
    finally:
        other.close()
    assert list(waiting.applied()) == [1]


@pytest.mark.parametrize("table", ["schema_migrations", "schema_migrations_history"])
def test_a_table_with_no_columns_is_foreign_not_absent(
    tmp_path: Path, dsn: str, table: str
) -> None:
    if table.endswith("_history"):
        _replace_history_with_an_empty_table(dsn)
    else:
        execute(dsn, "CREATE TABLE schema_migrations ()")
    before = user_tables(dsn)
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    for command in ("status", "up"):
        r = run_cli([command, "-d", dsn, "--dir", str(tree)])
        assert r.returncode == 2, r
        assert f"table {table} exists but is not a vezamig tracking table" in r.stderr
        assert "(columns: none)" in r.stderr
        assert "Traceback" not in r.output
    assert user_tables(dsn) == before


def _replace_history_with_an_empty_table(dsn: str) -> None:
    conn = connect(dsn)
    try:
        Tracker(conn, Config()).ensure()
    finally:
        conn.close()
    execute(dsn, "DROP TABLE schema_migrations_history; CREATE TABLE schema_migrations_history ()")


def test_a_tracking_table_whose_columns_allow_null_is_refused_not_a_traceback(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    migrate(dsn, tree)
    execute(
        dsn,
        "ALTER TABLE schema_migrations ALTER name DROP NOT NULL, ALTER applied_at DROP NOT NULL;"
        " INSERT INTO schema_migrations VALUES (7, NULL, 'x', NULL, 'me', 1, false)",
    )
    for args in (["status"], ["status", "--json"], ["up"]):
        r = run_cli([*args, "-d", dsn, "--dir", str(tree)])
        assert r.returncode == 2, r
        assert "Traceback" not in r.output
        assert "name, applied_at allow(s) NULL" in r.stderr
        assert "SET NOT NULL" in r.stderr
    assert r.stdout == ""


def test_a_step_that_empties_search_path_still_records_itself(tmp_path: Path, dsn: str) -> None:
    """pg_dump output starts with set_config('search_path', '', false): session-wide."""
    tree = write_tree(
        tmp_path,
        {
            "up/001_dump_up.sql": (
                "SELECT pg_catalog.set_config('search_path', '', false);\n"
                "CREATE TABLE public.a (id int);\n"
            ),
            "up/002_next_up.sql": "CREATE TABLE public.b (id int);\n",
        },
    )
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 0, r
    assert query(dsn, "SELECT version FROM public.schema_migrations ORDER BY 1") == [(1,), (2,)]
    assert [(h["version"], h["direction"]) for h in history(dsn)] == [(1, "up"), (2, "up")]


def test_a_step_that_points_search_path_elsewhere_cannot_divert_the_bookkeeping(
    tmp_path: Path, dsn: str
) -> None:
    """Another schema earlier in search_path with same-named tables must not receive the
    row: the tracking table is resolved once, then used schema-qualified."""
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE public.r1 (id int);\n"})
    migrate(dsn, tree)
    execute(
        dsn,
        "CREATE SCHEMA ev; CREATE TABLE ev.schema_migrations (LIKE public.schema_migrations"
        " INCLUDING ALL); CREATE TABLE ev.schema_migrations_history"
        " (LIKE public.schema_migrations_history INCLUDING ALL)",
    )
    write_tree(
        tree,
        {
            "up/002_b_up.sql": (
                "SET LOCAL search_path = ev, public;\nCREATE TABLE public.r2 (id int);\n"
            )
        },
    )
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 0, r
    assert query(dsn, "SELECT version FROM public.schema_migrations ORDER BY 1") == [(1,), (2,)]
    assert query(dsn, "SELECT count(*) FROM ev.schema_migrations") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM ev.schema_migrations_history") == [(0,)]
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 0 and r.stdout == "nothing to do\n", r


@pytest.mark.parametrize("why", ["no_create", "read_only"])
def test_a_user_that_cannot_create_the_tracking_tables_gets_exit_2_not_a_raw_error(
    tmp_path: Path, dsn: str, why: str
) -> None:
    role = f"vz_{why}"
    execute(dsn, f"CREATE ROLE {role} LOGIN")
    if why == "read_only":
        execute(dsn, f"GRANT CREATE ON SCHEMA public TO {role};"
                f" ALTER ROLE {role} SET default_transaction_read_only = on")  # fmt: skip
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    params = conninfo_to_dict(dsn)
    params["user"] = role
    try:
        r = run_cli(["up", "-d", make_conninfo(**params), "--dir", str(tree)])
        assert r.returncode == 2, r
        said = (
            [
                "cannot create the tracking tables schema_migrations and",
                f"the database user {role} needs CREATE on the schema public",
            ]
            if why == "no_create"
            else ["vezamig up refused: default_transaction_read_only is on for this session"]
        )
        for part in said:
            assert part in r.stderr
        assert "Traceback" not in r.output
        assert user_tables(dsn) == []
    finally:
        execute(dsn, f"REVOKE ALL ON SCHEMA public FROM {role}; DROP ROLE {role}")


def test_a_user_may_keep_its_tracking_tables_in_a_schema_it_owns(tmp_path: Path, dsn: str) -> None:
    """No CREATE on the database is needed for a schema that exists."""
    role = "vz_schema_owner"
    execute(dsn, f"CREATE ROLE {role} LOGIN; CREATE SCHEMA app AUTHORIZATION {role}")
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE app.a (id int);\n"})
    params = conninfo_to_dict(dsn)
    params["user"] = role
    try:
        r = run_cli(["up", "-d", make_conninfo(**params), "--table", "app.migrations",
                     "--dir", str(tree)])  # fmt: skip
        assert r.returncode == 0, r
        assert query(dsn, "SELECT version FROM app.migrations") == [(1,)]
        assert query(dsn, "SELECT tableowner FROM pg_tables WHERE tablename = 'a'") == [(role,)]
    finally:
        execute(dsn, f"DROP SCHEMA app CASCADE; DROP ROLE {role}")


def test_a_hand_edited_tracking_table_is_told_what_differs(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    assert run_cli(["up", "-d", dsn, "--dir", str(tree)]).returncode == 0
    execute(
        dsn,
        "ALTER TABLE schema_migrations_history ALTER COLUMN duration_ms TYPE bigint,"
        " ADD COLUMN ticket text, DROP COLUMN tool_version",
    )
    r = run_cli(["status", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 2, r
    assert (
        "table schema_migrations_history has vezamig's columns, but differs: duration_ms is "
        "bigint, expected integer; missing tool_version text; extra column(s) ticket"
    ) in r.stderr
    assert "the exact CREATE TABLE" in r.stderr
    assert "golang-migrate" not in r.stderr


@pytest.mark.parametrize(
    ("name", "create", "kind"),
    [
        ("idx", "CREATE TABLE base (id int); CREATE INDEX idx ON base (id)", "an index"),
        ("typ", "CREATE TYPE typ AS (a int)", "a composite type"),
        ("seq", "CREATE SEQUENCE seq", "a sequence"),
        ("vw", "CREATE VIEW vw AS SELECT 1 AS version", "a view"),
    ],
)
def test_a_table_option_naming_something_that_is_not_a_table_is_exit_2(
    tmp_path: Path, dsn: str, name: str, create: str, kind: str
) -> None:
    # An index or a composite type made the rows query fail: "database error", exit 1.
    execute(dsn, create)
    before = user_tables(dsn)
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    for args in (["status", "--dir", str(tree)], ["up", "--dir", str(tree)], ["history"]):
        r = run_cli([*args, "-d", dsn, "--table", name])
        assert r.returncode == 2, r
        assert f"{name} is {kind}, not a table; vezamig changed nothing" in r.stderr
        assert "--table NAME" in r.stderr
    assert user_tables(dsn) == before


@pytest.mark.parametrize(("table", "taken"), [("e", "e"), ("dm", "dm"), ("r", "r_history")])
def test_a_table_option_whose_name_a_type_holds_is_exit_2_on_the_first_write(
    tmp_path: Path, dsn: str, table: str, taken: str
) -> None:
    # An enum, a domain (or any type) of that name: CREATE TABLE fails, "type … already
    # exists" was a database error, exit 1.
    execute(dsn, "CREATE TYPE e AS ENUM ('a'); CREATE DOMAIN dm AS int;"
                 " CREATE TYPE r_history AS ENUM ('x')")  # fmt: skip
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    r = run_cli(["up", "-d", dsn, "--dir", str(tree), "--table", table])
    assert r.returncode == 2, r
    assert f'type "{taken}" already exists; nothing was changed' in r.stderr
    assert "--table NAME" in r.stderr
    assert user_tables(dsn) == []


def test_a_table_option_naming_one_of_a_pair_of_vezamig_tables_says_which_to_use(
    tmp_path: Path, dsn: str
) -> None:
    """`--table a_history` is a valid choice (its history is a_history_history); the
    other names of that pair must not be told to ALTER TABLE a valid audit log."""
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--table", "a_history"]).returncode == 0
    before = user_tables(dsn)
    r = run_cli(["status", "-d", dsn, "--dir", str(tree), "--table", "a_history_history"])
    assert r.returncode == 2, r
    assert "a_history_history is a vezamig history table (an audit log)" in r.stderr
    assert "did you mean --table a_history?" in r.stderr
    assert "ALTER TABLE" not in r.stderr
    r = run_cli(["up", "-d", dsn, "--dir", str(tree), "--table", "a"])
    assert r.returncode == 2, r
    assert "a_history is a vezamig tracking table (of --table a_history)" in r.stderr
    assert "did you mean --table a_history?" in r.stderr
    assert "another migration tool" not in r.stderr
    assert user_tables(dsn) == before


def test_a_table_option_in_a_schema_postgresql_reserves_is_exit_2(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE q (i int);\n"})
    for command in ("status", "up"):
        r = run_cli([command, "-d", dsn, "--dir", str(tree), "--table", "pg_temp.sm"])
        assert r.returncode == 2, r
        assert "names starting with pg_ are PostgreSQL's own" in r.stderr
    assert user_tables(dsn) == []
