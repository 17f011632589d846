"""`vezamig history [--json] [--limit N]` (SPEC §4, §5): the audit log, newest first."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    CliResult,
    execute,
    history,
    query,
    run_cli,
    run_cli_on_terminal,
    user_tables,
    write_tree,
)

from vezamig.errors import EXIT_OK, EXIT_REFUSED, EXIT_STEP_FAILED, EXIT_USAGE

COLUMNS = [
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


def tree(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "sql",
        {
            "up/001_users_up.sql": "CREATE TABLE users (id int);\n",
            "up/002_tracks_up.sql": "CREATE TABLE tracks (id int);\n",
            "down/002_tracks_down.sql": (
                "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks)\nDROP TABLE tracks;\n"
            ),
        },
    )


def vz(dsn: str, base: Path, *args: str) -> CliResult:
    return run_cli([*args, "--dir", str(base), "-d", dsn])


def as_json(dsn: str, base: Path, *args: str) -> list[dict[str, Any]]:
    result = vz(dsn, base, "history", "--json", *args)
    assert result.returncode == EXIT_OK, result
    data: list[dict[str, Any]] = json.loads(result.stdout)  # stdout holds only the JSON
    return data


@pytest.fixture
def story(dsn: str, tmp_path: Path) -> Path:
    """up 1, up 2, a refused down of 2, then a down of 2: four rows."""
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    execute(dsn, "INSERT INTO tracks VALUES (1)")
    assert vz(dsn, base, "down", "--yes").returncode == EXIT_REFUSED
    execute(dsn, "DELETE FROM tracks")
    assert vz(dsn, base, "down", "--yes").returncode == EXIT_OK
    return base


def test_history_lists_every_step_newest_first(dsn: str, story: Path) -> None:
    rows = as_json(dsn, story)
    assert [(r["version"], r["direction"], r["outcome"]) for r in rows] == [
        (2, "down", "ok"),
        (2, "down", "refused"),
        (2, "up", "ok"),
        (1, "up", "ok"),
    ]
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)
    starts = [datetime.fromisoformat(r["started_at"]) for r in rows]
    assert starts == sorted(starts, reverse=True)


def test_history_json_is_an_array_of_objects_with_the_spec_columns(dsn: str, story: Path) -> None:
    rows = as_json(dsn, story)
    assert all(list(r) == COLUMNS for r in rows)
    newest = rows[0]
    assert isinstance(newest["id"], int) and isinstance(newest["duration_ms"], int)
    assert newest["name"] == "tracks"
    assert len(newest["checksum"]) == 64
    assert datetime.fromisoformat(newest["started_at"]).tzinfo is not None
    assert newest["db_user"] == history(dsn)[-1]["db_user"]
    assert newest["os_user"] and newest["host"] and newest["tool_version"]
    refused = rows[1]
    assert "guard at" in refused["message"] and "returned false" in refused["message"]
    # The JSON says what the table holds, row for row.
    table = history(dsn)[::-1]
    assert [r["id"] for r in rows] == [r["id"] for r in table]
    assert [r["message"] for r in rows] == [r["message"] for r in table]


def test_limit_keeps_the_newest_rows(dsn: str, story: Path) -> None:
    rows = as_json(dsn, story, "--limit", "2")
    assert [(r["direction"], r["outcome"]) for r in rows] == [("down", "ok"), ("down", "refused")]
    assert len(as_json(dsn, story, "--limit", "100")) == 4


def test_limit_must_be_positive(dsn: str, story: Path) -> None:
    result = vz(dsn, story, "history", "--limit", "0")
    assert result.returncode == EXIT_USAGE, result


def test_plain_output_is_one_line_per_row_newest_first(dsn: str, story: Path) -> None:
    result = vz(dsn, story, "history")
    assert result.returncode == EXIT_OK, result
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    fields = [line.split("\t") for line in lines]
    assert [(f[2], f[4], f[5]) for f in fields] == [
        ("2", "down", "ok"),
        ("2", "down", "refused"),
        ("2", "up", "ok"),
        ("1", "up", "ok"),
    ]


def test_on_a_terminal_history_is_a_table(dsn: str, story: Path) -> None:
    result = run_cli_on_terminal(["history", "--dir", str(story), "-d", dsn], answer="")
    assert result.returncode == EXIT_OK, result
    header = next(line for line in result.stdout.splitlines() if "direction" in line)
    for column in ("id", "when", "version", "direction", "outcome", "message"):
        assert column in header
    assert "refused" in result.stdout


def test_history_of_a_database_without_tracking_tables_is_empty_and_creates_nothing(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    plain = vz(dsn, base, "history")
    assert plain.returncode == EXIT_OK, plain
    assert plain.stdout.strip() == "no history yet"
    assert as_json(dsn, base) == []
    assert user_tables(dsn) == []


def test_a_run_with_nothing_to_do_writes_no_history_row(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    assert vz(dsn, base, "up").returncode == EXIT_OK
    assert len(as_json(dsn, base)) == 2


def test_history_reads_the_table_named_by_table(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--table", "ops.migrations").returncode == EXIT_OK
    assert as_json(dsn, base) == []
    rows = as_json(dsn, base, "--table", "ops.migrations")
    assert [r["version"] for r in rows] == [2, 1]


def test_a_limit_larger_than_bigint_is_a_usage_error(dsn: str, tmp_path: Path) -> None:
    from helpers import run_cli

    r = run_cli(["history", "-d", dsn, "--limit", "99999999999999999999"])
    assert r.returncode == 2, r
    assert "--limit" in r.stderr and "Traceback" not in r.output


def test_a_hand_edited_row_with_infinity_or_an_unknown_outcome_is_shown_not_a_crash(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    execute(
        dsn,
        "ALTER TABLE schema_migrations_history DROP CONSTRAINT IF EXISTS"
        " schema_migrations_history_outcome_check;"
        " UPDATE schema_migrations_history SET started_at = 'infinity' WHERE version = 1;"
        " UPDATE schema_migrations_history SET outcome = 'skipped' WHERE version = 2",
    )
    rows = as_json(dsn, base)
    assert [(r["version"], r["started_at"], r["outcome"]) for r in rows][-1] == (
        1,
        "infinity",
        "ok",
    )
    plain = vz(dsn, base, "history")
    assert plain.returncode == EXIT_OK, plain
    assert "\tinfinity\t1\t" in plain.stdout
    shown = run_cli_on_terminal(["history", "--dir", str(base), "-d", dsn], "")
    assert shown.returncode == EXIT_OK, shown
    assert "skipped" in shown.stdout and "infinity" in shown.stdout


def test_started_at_is_iso_8601_with_microseconds_in_json_and_seconds_in_text(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    [newest, *_] = as_json(dsn, base)
    stamp = datetime.fromisoformat(newest["started_at"])
    assert newest["started_at"] == stamp.isoformat(timespec="microseconds")
    first_line = vz(dsn, base, "history").stdout.splitlines()[0]
    assert first_line.split("\t")[1] == stamp.isoformat(timespec="seconds")


def test_a_failure_that_cannot_be_recorded_says_so(dsn: str, tmp_path: Path) -> None:
    # SPEC §4 wants a row for every failed step; when the database refuses it, the
    # operator must at least be told the audit log has a gap.
    base = write_tree(
        tmp_path / "sql",
        {"up/001_a_up.sql": "CREATE TABLE a ();\n", "up/002_b_up.sql": "SELECT 1/0;\n"},
    )
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    execute(
        dsn,
        "CREATE FUNCTION no_failures() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN IF NEW.outcome = 'failed' THEN RAISE 'no failures here'; END IF;"
        " RETURN NEW; END$$;"
        " CREATE TRIGGER no_failures AFTER INSERT ON schema_migrations_history"
        " FOR EACH ROW EXECUTE FUNCTION no_failures()",
    )
    r = vz(dsn, base, "up")
    assert r.returncode == 1, r
    assert "22012 division by zero" in r.stderr
    assert (
        "warning: the failed up of 2 could not be recorded in schema_migrations_history: "
        "no failures here"
    ) in r.stderr
    assert [row["outcome"] for row in history(dsn)] == ["ok"]


def test_a_date_bc_and_null_fields_are_shown_as_they_are(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    execute(
        dsn,
        "INSERT INTO schema_migrations_history (version, name, direction, outcome,"
        " started_at, db_user) VALUES (9, 'x', 'down', 'failed', '0044-03-15 BC', 'u');"
        " UPDATE schema_migrations SET applied_at = '0010-01-01 BC'",
    )
    [newest, *_] = as_json(dsn, base)
    assert newest["started_at"].endswith(" BC"), newest  # not silently year 44 AD
    line = vz(dsn, base, "history", "--limit", "1").stdout
    assert "None" not in line
    assert line.split("\t")[6:9] == ["", "u", "@"]  # duration, db_user, os_user@host
    status = run_cli(["status", "--json", "--dir", str(base), "-d", dsn])
    assert json.loads(status.stdout)["migrations"][0]["applied_at"].endswith(" BC")
    # Still 1 BC where the session's time zone is behind UTC on 1 January of year 1.
    execute(dsn, "UPDATE schema_migrations SET applied_at = '0001-01-01 02:00:00+00'")
    behind = run_cli(
        ["status", "--json", "--dir", str(base), "-d", dsn], env={"PGTZ": "America/New_York"}
    )
    assert json.loads(behind.stdout)["migrations"][0]["applied_at"].endswith(" BC"), behind


_CLIENT_CLOCK_10_MIN_BEHIND = """\
import datetime as _dt

class _Behind(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return super().now(tz) - _dt.timedelta(minutes=10)

_dt.datetime = _Behind
"""


def test_every_history_row_takes_its_time_from_the_servers_clock(dsn: str, tmp_path: Path) -> None:
    """Client and server clocks differ in production: a refused, failed, no-transaction,
    baseline or repair row stamped by the client would run backwards against the ids
    and against applied_at (SPEC §4: ids increase in time order)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CLIENT_CLOCK_10_MIN_BEHIND)
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "up/002_b_up.sql": "-- vezamig:no-transaction\nCREATE TABLE b (id int);\n",
            "up/003_c_up.sql": "-- vezamig:guard SELECT false\nCREATE TABLE c (id int);\n",
        },
    )
    skewed = {"PYTHONPATH": str(hook)}
    (server_before,) = query(dsn, "SELECT clock_timestamp()")[0]

    def vz_skewed(*args: str) -> CliResult:
        return run_cli([*args, "--dir", str(base), "-d", dsn], env=skewed)

    assert vz_skewed("up").returncode == EXIT_REFUSED  # 1 ok, 2 ok (no-tx), 3 refused
    (base / "up/003_c_up.sql").write_text("CREATE TABLE c (id int) oops;\n")
    assert vz_skewed("up").returncode == EXIT_STEP_FAILED
    (base / "up/001_a_up.sql").write_text("CREATE TABLE a (id int);  -- edited\n")
    assert vz_skewed("repair", "--checksums", "--yes").returncode == EXIT_OK
    assert vz_skewed("baseline", "--version", "1", "--table", "other").returncode == EXIT_OK
    (server_after,) = query(dsn, "SELECT clock_timestamp()")[0]

    rows = [
        (r["id"], r["direction"], r["outcome"], r["started_at"])
        for t in ("schema_migrations_history", "other_history")
        for r in history(dsn, t)
    ]
    assert [(d, o) for _, d, o, _ in rows] == [
        ("up", "ok"),
        ("up", "ok"),
        ("up", "refused"),
        ("up", "failed"),
        ("repair", "ok"),
        ("baseline", "ok"),
    ]
    for _, direction, outcome, started_at in rows:
        assert server_before <= started_at <= server_after, (direction, outcome, started_at)
    mine = [r for r in rows if r[1] != "baseline"]
    assert [r[3] for r in mine] == sorted(r[3] for r in mine)
    (applied_at,) = query(dsn, "SELECT applied_at FROM schema_migrations WHERE version = 2")[0]
    no_tx_started = rows[1][3]
    assert no_tx_started <= applied_at <= server_after
