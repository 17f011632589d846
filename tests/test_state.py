"""The tracking table and its history (SPEC §4), on a real PostgreSQL."""

from __future__ import annotations

import getpass
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from helpers import execute, history, query, table_exists, user_tables

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
    assert row.applied_at.tzinfo is not None


def test_history_rows_are_append_only_with_increasing_ids(conn: Connection, dsn: str) -> None:
    tracker = Tracker(conn, Config())
    for i, outcome in enumerate(["ok", "failed", "refused"]):
        tracker.write_history(
            version=i + 1,
            name="n",
            direction="up",
            outcome=outcome,
            checksum="c",
            started_at=datetime.now(UTC),
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
