"""`vezamig baseline` and `vezamig repair` (SPEC §5): they change what the tracking
table believes, never the schema, and refuse a database that is not in the state
they resolve. On a real PostgreSQL, through the real CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import (
    CliResult,
    applied_versions,
    execute,
    held_elsewhere,
    history,
    query,
    run_cli,
    run_cli_on_terminal,
    table_exists,
    write_tree,
)

from vezamig.errors import EXIT_LOCKED, EXIT_OK, EXIT_REFUSED, EXIT_STEP_FAILED, EXIT_USAGE

USERS = "-- 1 users\nCREATE TABLE users (id bigint PRIMARY KEY);\n"
TRACKS = "-- 2 tracks\nCREATE TABLE tracks (id bigint PRIMARY KEY, title text);\n"
TRACKS_DOWN = (
    "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks)\nDROP TABLE IF EXISTS tracks;\n"
)
BPM = "-- 3 bpm\nALTER TABLE tracks ADD COLUMN bpm int;\n"


def tree(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "sql",
        {
            "up/001_users_up.sql": USERS,
            "up/002_tracks_up.sql": TRACKS,
            "down/002_tracks_down.sql": TRACKS_DOWN,
            "up/003_bpm_up.sql": BPM,
        },
    )


def vz(dsn: str, base: Path, *args: str) -> CliResult:
    return run_cli([*args, "--dir", str(base), "-d", dsn])


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def recorded(dsn: str, table: str = "schema_migrations") -> list[tuple[int, str, str, bool]]:
    return [
        (r[0], r[1], r[2], r[3])
        for r in query(dsn, f"SELECT version, name, checksum, dirty FROM {table} ORDER BY 1")
    ]


# ---- baseline ------------------------------------------------------------------------


def test_baseline_adopts_a_database_that_already_has_the_tables(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    execute(dsn, USERS + TRACKS)  # migrated by hand, long ago
    result = vz(dsn, base, "baseline", "--version", "2")
    assert result.returncode == EXIT_OK, result
    assert "recorded 2 version(s); current version 2" in result.stdout
    assert recorded(dsn) == [
        (1, "users", sha256(USERS), False),
        (2, "tracks", sha256(TRACKS), False),
    ]
    rows = history(dsn)
    assert [(r["version"], r["direction"], r["outcome"]) for r in rows] == [
        (1, "baseline", "ok"),
        (2, "baseline", "ok"),
    ]
    assert all(r["checksum"] == sha256(t) for r, t in zip(rows, (USERS, TRACKS), strict=True))

    # Nothing was run (CREATE TABLE again would have failed); up applies only 3.
    up = vz(dsn, base, "up")
    assert up.returncode == EXIT_OK, up
    assert applied_versions(dsn) == [1, 2, 3]
    assert history(dsn)[-1]["direction"] == "up"
    status = vz(dsn, base, "status", "--exit-code")
    assert status.returncode == EXIT_OK, status


def test_baseline_never_runs_the_files_it_records(dsn: str, tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_boom_up.sql": "SELECT 1 / 0;\n"})
    result = vz(dsn, base, "baseline", "--version", "1")
    assert result.returncode == EXIT_OK, result
    assert applied_versions(dsn) == [1]


def test_baseline_refuses_when_anything_is_already_recorded(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    before = history(dsn)
    result = vz(dsn, base, "baseline", "--version", "2")
    assert result.returncode == EXIT_REFUSED, result
    assert "1 version(s) already recorded in schema_migrations (1)" in result.stderr
    assert applied_versions(dsn) == [1]
    assert history(dsn) == before


def test_baseline_of_a_version_with_no_up_file_is_a_usage_error(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    result = vz(dsn, base, "baseline", "--version", "7")
    assert result.returncode == EXIT_USAGE, result
    assert "--version 7: no up file has that version" in result.stderr
    assert applied_versions(dsn) == []


def test_a_foreign_schema_migrations_is_left_alone_and_the_way_out_is_named(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    execute(dsn, USERS + TRACKS)
    # golang-migrate's one-row table
    execute(dsn, "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty bool)")
    execute(dsn, "INSERT INTO schema_migrations VALUES (2, false)")

    result = vz(dsn, base, "baseline", "--version", "2")
    assert result.returncode == EXIT_USAGE, result
    assert "schema_migrations exists but is not a vezamig tracking table" in result.stderr
    assert "--table vezamig_migrations" in result.stderr
    assert "vezamig baseline --version N" in result.stderr
    assert query(dsn, "SELECT version, dirty FROM schema_migrations") == [(2, False)]
    assert not table_exists(dsn, "schema_migrations_history")

    adopted = vz(dsn, base, "baseline", "--version", "2", "--table", "vezamig_migrations")
    assert adopted.returncode == EXIT_OK, adopted
    assert applied_versions(dsn, "vezamig_migrations") == [1, 2]
    assert [r["direction"] for r in history(dsn, "vezamig_migrations_history")] == [
        "baseline",
        "baseline",
    ]
    assert query(dsn, "SELECT version, dirty FROM schema_migrations") == [(2, False)]


# ---- repair --checksums ------------------------------------------------------------------


def test_repair_checksums_re_records_an_intentionally_edited_file(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    edited = TRACKS.replace("-- 2 tracks", "-- 2 tracks (comment reworded)")
    (base / "up/002_tracks_up.sql").write_text(edited)

    drift = vz(dsn, base, "up")
    assert drift.returncode == EXIT_REFUSED, drift
    assert "version 2 (tracks) is modified" in drift.stderr

    result = vz(dsn, base, "repair", "--checksums", "--yes")
    assert result.returncode == EXIT_OK, result
    assert "2 tracks: re-record checksum" in result.stdout
    assert [r[2] for r in recorded(dsn)] == [sha256(USERS), sha256(edited), sha256(BPM)]
    row = history(dsn)[-1]
    assert (row["version"], row["direction"], row["outcome"], row["checksum"]) == (
        2,
        "repair",
        "ok",
        sha256(edited),
    )
    assert row["message"] == f"checksum re-recorded: {sha256(TRACKS)} -> {sha256(edited)}"
    assert vz(dsn, base, "status", "--exit-code").returncode == EXIT_OK


def test_repair_checksums_with_nothing_modified_does_nothing_and_exits_0(
    dsn: str, tmp_path: Path
) -> None:
    """Like `up` with nothing pending: nothing to do is not a refusal, and writes nothing."""
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    before = history(dsn)
    result = vz(dsn, base, "repair", "--checksums")  # no --yes needed: nothing to confirm
    assert result.returncode == EXIT_OK, result
    assert result.stdout == "nothing to repair: no applied version has a changed checksum\n"
    assert history(dsn) == before


# ---- confirmation and refusals --------------------------------------------------------------


@pytest.fixture
def drifted(dsn: str, tmp_path: Path) -> Path:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    (base / "up/003_bpm_up.sql").write_text(BPM + "-- edited\n")
    return base


def test_repair_without_a_terminal_proceeds_without_asking(dsn: str, drifted: Path) -> None:
    """SPEC §5 asks only `down` for confirmation (`[--yes]`); a script runs `repair`
    as the contract writes it."""
    result = vz(dsn, drifted, "repair", "--checksums")
    assert result.returncode == EXIT_OK, result
    assert "Record this repair?" not in result.stdout + result.stderr
    assert recorded(dsn)[2][2] == sha256(BPM + "-- edited\n")
    assert [r["direction"] for r in history(dsn)] == ["up", "up", "up", "repair"]


@pytest.mark.parametrize(("answer", "code"), [("y", EXIT_OK), ("yes", EXIT_OK), ("n", 3), ("", 3)])
def test_repair_asks_on_a_terminal_like_down(
    dsn: str, drifted: Path, answer: str, code: int
) -> None:
    result = run_cli_on_terminal(
        ["repair", "--checksums", "--dir", str(drifted), "-d", dsn], answer
    )
    assert result.returncode == code, result
    assert "Record this repair? [y/N]" in result.stdout
    changed = recorded(dsn)[2][2] == sha256(BPM + "-- edited\n")
    assert changed is (code == EXIT_OK)
    assert (history(dsn)[-1]["direction"] == "repair") is (code == EXIT_OK)


@pytest.mark.parametrize("flag", ["--applied", "--rolled-back"])
@pytest.mark.parametrize(("version", "state"), [("1", "applied"), ("4", "unknown")])
def test_repair_refuses_a_version_that_is_not_dirty(
    dsn: str, tmp_path: Path, flag: str, version: str, state: str
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "2").returncode == EXIT_OK
    before = (recorded(dsn), history(dsn))
    result = vz(dsn, base, "repair", flag, version, "--yes")
    assert result.returncode == EXIT_REFUSED, result
    assert f"version {version} is {state}, not dirty" in result.stderr
    assert (recorded(dsn), history(dsn)) == before


def test_repair_refuses_a_pending_version(dsn: str, tmp_path: Path) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "2").returncode == EXIT_OK
    result = vz(dsn, base, "repair", "--rolled-back", "3", "--yes")
    assert result.returncode == EXIT_REFUSED, result
    assert "version 3 is pending, not dirty" in result.stderr
    assert applied_versions(dsn) == [1, 2]


@pytest.mark.parametrize(
    "args", [[], ["--checksums", "--applied", "2"], ["--applied", "2", "--rolled-back", "2"]]
)
def test_repair_needs_exactly_one_mode(dsn: str, tmp_path: Path, args: list[str]) -> None:
    result = vz(dsn, tree(tmp_path), "repair", *args, "--yes")
    assert result.returncode == EXIT_USAGE, result
    assert "exactly one of --checksums, --applied V, --rolled-back V" in result.stderr
    assert not table_exists(dsn, "schema_migrations")


def test_repair_resolves_a_dirty_version_left_by_a_failed_step(dsn: str, tmp_path: Path) -> None:
    # Both resolutions on a real half-finished step are in test_ops_notx.py; this one checks
    # that a repair leaves the schema alone and writes exactly one history row.
    base = tree(tmp_path)
    (base / "up/003_bpm_up.sql").write_text(
        "-- vezamig:no-transaction\nALTER TABLE tracks ADD COLUMN bpm int;\nSELECT 1 / 0;\n"
    )
    assert vz(dsn, base, "up").returncode == 1
    assert recorded(dsn)[-1][3] is True
    columns = query(dsn, "SELECT attname FROM pg_attribute WHERE attrelid = 'tracks'::regclass")
    rows = len(history(dsn))

    result = vz(dsn, base, "repair", "--applied", "3", "--yes")
    assert result.returncode == EXIT_OK, result
    assert recorded(dsn)[-1][3] is False
    assert len(history(dsn)) == rows + 1
    assert (
        query(dsn, "SELECT attname FROM pg_attribute WHERE attrelid = 'tracks'::regclass")
        == columns
    )


# ---- both: --lock-timeout -------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["baseline", "--version", "3"], ["repair", "--checksums", "--yes"]], ids=str
)
def test_a_lock_on_the_tracking_table_is_waited_for_as_a_step_waits_then_exit_4(
    dsn: str, tmp_path: Path, args: list[str]
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    if args[0] == "baseline":
        execute(dsn, "DELETE FROM schema_migrations")
    else:
        (base / "up/003_bpm_up.sql").write_text(BPM + "-- edited\n")
    before = (recorded(dsn), history(dsn))
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE schema_migrations IN EXCLUSIVE MODE"):
        result = vz(dsn, base, *args, "--lock-timeout", "200ms", "--lock-retries", "1")
    assert result.returncode == EXIT_LOCKED, result
    assert "lock timeout (200 ms) after 2 attempt(s)" in result.stderr
    assert "nothing was recorded" in result.stderr
    assert "retry 1/1" in result.stderr
    assert (recorded(dsn), history(dsn)) == before
    assert vz(dsn, base, *args, "--lock-timeout", "200ms").returncode == EXIT_OK


def test_a_statement_timeout_while_writing_the_rows_is_a_failure_not_a_lost_connection(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up").returncode == EXIT_OK
    execute(dsn, "DELETE FROM schema_migrations")
    execute(
        dsn,
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN PERFORM pg_sleep(2); RETURN NEW; END$$;"
        " CREATE TRIGGER slow AFTER INSERT ON schema_migrations_history"
        " FOR EACH ROW EXECUTE FUNCTION slow()",
    )
    before = (recorded(dsn), len(history(dsn)))
    result = vz(dsn, base, "baseline", "--version", "3", "--statement-timeout", "300ms")
    assert result.returncode == EXIT_STEP_FAILED, result
    assert "statement timeout" in result.stderr
    assert "--statement-timeout 300 ms" in result.stderr
    assert "nothing was recorded" in result.stderr
    assert "lost the database connection" not in result.stderr
    assert (recorded(dsn), len(history(dsn))) == before


def test_a_read_only_session_is_refused_by_every_writing_command_before_anything_runs(
    dsn: str, tmp_path: Path
) -> None:
    """default_transaction_read_only (set for a role or database to say no): vezamig does
    not switch it off; the run is refused as a wrong target (exit 2), not failed in its
    first step or row with 25006. What it names as the way out works."""
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "2").returncode == EXIT_OK
    execute(
        dsn,
        "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on',"
        " current_database()); END$$",
    )
    edited = write_tree(tmp_path / "edited", {"up/001_users_up.sql": USERS + "-- edited\n"})
    before = (recorded(dsn), len(history(dsn)))
    for args in (
        ["up"],
        ["down", "--yes"],
        ["baseline", "--version", "1", "--table", "other"],
    ):
        result = vz(dsn, base, *args)
        assert result.returncode == EXIT_USAGE, (args, result)
        assert result.stdout == ""  # refused before any plan is shown
        assert "default_transaction_read_only is on for this session; nothing was changed" in (
            result.stderr
        )
        assert "PGOPTIONS='-c default_transaction_read_only=off'" in result.stderr
    result = run_cli(["repair", "--checksums", "--yes", "--dir", str(edited), "-d", dsn])
    assert result.returncode == EXIT_USAGE, result
    assert "vezamig repair refused: default_transaction_read_only is on" in result.stderr
    assert (recorded(dsn), len(history(dsn))) == before
    assert not table_exists(dsn, "other")
    assert vz(dsn, base, "status").returncode == EXIT_OK  # reading needs no write
    assert vz(dsn, base, "up", "--to", "2").returncode == EXIT_OK  # nothing to do
    fixed = run_cli(
        ["up", "--dir", str(base), "-d", dsn],
        env={"PGOPTIONS": "-c default_transaction_read_only=off"},
    )
    assert fixed.returncode == EXIT_OK, fixed
    assert [v for v, *_ in recorded(dsn)] == [1, 2, 3]


def test_rows_the_database_refuses_are_a_failure_with_nothing_recorded(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    edited = write_tree(tmp_path / "edited", {"up/001_users_up.sql": USERS + "-- edited\n"})
    execute(
        dsn,
        "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'tracking is frozen'; END$$;"
        " CREATE TRIGGER frozen AFTER UPDATE ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION frozen()",
    )
    before = (recorded(dsn), len(history(dsn)))
    result = vz(dsn, edited, "repair", "--checksums", "--yes")
    assert result.returncode == EXIT_STEP_FAILED, result
    assert (
        "vezamig repair: the database refused the rows; they were rolled back, nothing was recorded"
    ) in result.stderr
    assert "P0001 tracking is frozen" in result.stderr
    assert "database error" not in result.stderr
    assert (recorded(dsn), len(history(dsn))) == before


def test_a_database_that_refuses_to_create_the_tracking_tables_is_exit_2(
    dsn: str, tmp_path: Path
) -> None:
    """An event trigger that freezes DDL: a database set up to say no."""
    base = tree(tmp_path)
    execute(
        dsn,
        "CREATE FUNCTION ddl_freeze() RETURNS event_trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'DDL is frozen (%)', tg_tag; END$$;"
        " CREATE EVENT TRIGGER ddl_freeze ON ddl_command_start EXECUTE FUNCTION ddl_freeze()",
    )
    try:
        for args in (["up"], ["baseline", "--version", "2"]):
            result = vz(dsn, base, *args)
            assert result.returncode == EXIT_USAGE, (args, result)
            assert (
                "cannot create the tracking tables schema_migrations and "
                "schema_migrations_history; nothing was changed"
            ) in result.stderr
            assert "P0001 DDL is frozen (CREATE TABLE)" in result.stderr
        assert not table_exists(dsn, "schema_migrations")
        assert not table_exists(dsn, "users")
    finally:
        execute(dsn, "DROP EVENT TRIGGER ddl_freeze")


def test_a_modified_version_under_another_name_is_said_by_up_repair_and_history(
    dsn: str, tmp_path: Path
) -> None:
    """Version 1 of another branch (another name, other content): the refusal, the
    repair's plan and its history row all say the name changes, not only the checksum."""
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    other = write_tree(tmp_path / "other", {"up/001_invoices_up.sql": "CREATE TABLE inv ();\n"})
    up = vz(dsn, other, "up")
    assert up.returncode == EXIT_REFUSED, up
    assert "and was applied under another name, users (are --dir/--up-dir pointing" in up.stderr
    repair = vz(dsn, other, "repair", "--checksums", "--yes")
    assert repair.returncode == EXIT_OK, repair
    assert ", and the name users → invoices" in repair.stdout
    last = history(dsn)[-1]
    assert last["message"].endswith("; name re-recorded: users -> invoices")
    assert [(v, n) for v, n, *_ in recorded(dsn)] == [(1, "invoices")]


def test_a_first_up_on_a_schema_made_without_vezamig_points_at_baseline(
    dsn: str, tmp_path: Path
) -> None:
    """Found by an audit: after `pg_dump --schema-only` (tracking tables restored empty)
    the first step failed with "already exists" and nothing said how to go on."""
    base = tree(tmp_path)
    execute(dsn, USERS + TRACKS)  # what versions 1 and 2 create, made by hand
    result = vz(dsn, base, "up", "--to", "2")
    assert result.returncode == EXIT_STEP_FAILED, result
    assert '42P07 relation "users" already exists' in result.stderr
    assert (
        "vezamig has recorded nothing for this database, yet what its first migration creates "
        "is already there"
    ) in result.stderr
    assert "`vezamig baseline --version V" in result.stderr
    assert "the files go up to 3), then `up`" in result.stderr
    assert vz(dsn, base, "baseline", "--version", "2").returncode == EXIT_OK
    assert vz(dsn, base, "up").returncode == EXIT_OK
    assert applied_versions(dsn) == [1, 2, 3]


def test_a_later_step_that_finds_its_table_there_gets_no_baseline_hint(
    dsn: str, tmp_path: Path
) -> None:
    base = tree(tmp_path)
    assert vz(dsn, base, "up", "--to", "1").returncode == EXIT_OK
    execute(dsn, TRACKS)
    result = vz(dsn, base, "up")
    assert result.returncode == EXIT_STEP_FAILED, result
    assert '42P07 relation "tracks" already exists' in result.stderr
    assert "baseline" not in result.stderr
