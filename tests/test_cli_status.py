"""`vezamig status`: every version with its state, read-only (SPEC §4, §5)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    CliResult,
    applied_versions,
    execute,
    history,
    migrate,
    query,
    run_cli,
    user_tables,
    write_tree,
)

from vezamig.files import checksum_of


def vz(dsn: str, tree: Path, command: str, *args: str) -> CliResult:
    return run_cli([command, "-d", dsn, "--dir", str(tree), *args])


def status_json(dsn: str, tree: Path, *args: str) -> dict[str, Any]:
    r = vz(dsn, tree, "status", "--json", *args)
    assert r.returncode == 0, r
    assert r.stderr == ""
    data: dict[str, Any] = json.loads(r.stdout)  # stdout holds only the JSON
    return data


def every_state(tmp_path: Path, dsn: str) -> Path:
    """1 applied, 2 modified, 3 dirty, 4 out-of-order, 5 missing, 6 pending."""
    files = {}
    for v in (1, 2, 3, 5):
        files[f"up/00{v}_v{v}_up.sql"] = f"CREATE TABLE t{v} ();\n"
        files[f"down/00{v}_v{v}_down.sql"] = f"DROP TABLE t{v};\n"
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    (tree / "up" / "005_v5_up.sql").unlink()
    (tree / "down" / "005_v5_down.sql").unlink()
    (tree / "up" / "002_v2_up.sql").write_text("CREATE TABLE t2 (edited int);\n")
    execute(dsn, "UPDATE schema_migrations SET dirty = true WHERE version = 3")
    write_tree(tree, {"up/004_v4_up.sql": "SELECT 1;", "up/006_v6_up.sql": "SELECT 1;"})
    return tree


def test_status_on_an_empty_database_lists_pending_versions_and_creates_nothing(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/002_b.sql": "SELECT 2;"})
    r = vz(dsn, tree, "status")
    assert r.returncode == 0, r
    assert "current version 0" in r.stdout and "2 pending" in r.stdout
    assert [line.split()[:3] for line in r.stdout.splitlines()[1:]] == [
        ["1", "a", "pending"],
        ["2", "b", "pending"],
    ]
    assert user_tables(dsn) == []


def test_status_with_a_schema_qualified_table_creates_neither_schema_nor_table(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;"})
    r = vz(dsn, tree, "status", "--table", "ops.migrations")
    assert r.returncode == 0, r
    assert query(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ops'") == [(0,)]


def test_status_names_every_state(tmp_path: Path, dsn: str) -> None:
    tree = every_state(tmp_path, dsn)
    r = vz(dsn, tree, "status")
    assert r.returncode == 0, r
    rows = [line.split() for line in r.stdout.splitlines()[1:]]
    assert [(row[0], row[2]) for row in rows] == [
        ("1", "applied"),
        ("2", "modified"),
        ("3", "dirty"),
        ("4", "out-of-order"),
        ("5", "missing"),
        ("6", "pending"),
    ]
    assert "current version 5" in r.stdout and "2 pending" in r.stdout


def test_status_json_has_the_spec_shape(tmp_path: Path, dsn: str) -> None:
    tree = every_state(tmp_path, dsn)
    data = status_json(dsn, tree)
    assert set(data) == {"database", "table", "current_version", "pending", "migrations"}
    db = query(dsn, "SELECT current_database(), current_user")[0]
    assert data["database"]["dbname"] == db[0]
    assert data["database"]["user"] == db[1]
    assert isinstance(data["database"]["port"], int)
    assert isinstance(data["database"]["host"], str) and data["database"]["host"]
    assert data["table"] == "schema_migrations"
    assert data["current_version"] == 5
    assert data["pending"] == 2
    spec_keys = {
        "version",
        "name",
        "state",
        "reversible",
        "applied_at",
        "applied_by",
        "duration_ms",
        "checksum",
    }
    migrations = data["migrations"]
    for m in migrations:
        assert spec_keys <= set(m), m
    assert [(m["version"], m["name"], m["state"], m["reversible"]) for m in migrations] == [
        (1, "v1", "applied", True),
        (2, "v2", "modified", True),
        (3, "v3", "dirty", True),
        (4, "v4", "out-of-order", False),
        (5, "v5", "missing", False),
        (6, "v6", "pending", False),
    ]
    first = migrations[0]
    assert datetime.fromisoformat(first["applied_at"]).tzinfo is not None
    # The contract's shape: 2026-04-23T17:54:28+00:00, whole seconds and an offset.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", first["applied_at"])
    assert isinstance(first["duration_ms"], int)
    assert first["checksum"] == checksum_of(b"CREATE TABLE t1 ();\n")
    assert db[1] in first["applied_by"]
    pending = migrations[5]
    assert (pending["applied_at"], pending["applied_by"], pending["duration_ms"]) == (
        None,
        None,
        None,
    )
    assert pending["checksum"] == checksum_of(b"SELECT 1;")
    # For a modified version the checksum is the file's: the one that would be applied now.
    assert migrations[1]["checksum"] == checksum_of(b"CREATE TABLE t2 (edited int);\n")


def test_applied_at_is_shown_in_the_sessions_time_zone(tmp_path: Path, dsn: str) -> None:
    """The server formats applied_at (issue 7): in the session's TimeZone (PGTZ), the
    same instant as stored, and a hand-edited `infinity` is shown, not a crash."""
    from zoneinfo import ZoneInfo

    tree = write_tree(
        tmp_path, {"up/001_a_up.sql": "SELECT 1;\n", "up/002_b_up.sql": "SELECT 2;\n"}
    )
    migrate(dsn, tree)
    execute(dsn, "UPDATE schema_migrations SET applied_at = 'infinity' WHERE version = 2")
    stored = query(dsn, "SELECT applied_at FROM schema_migrations WHERE version = 1")[0][0]
    args = ["-d", dsn, "--dir", str(tree)]
    r = run_cli(["status", "--json", *args], env={"PGTZ": "America/St_Johns"})
    assert r.returncode == 0, r
    shown = [m["applied_at"] for m in json.loads(r.stdout)["migrations"]]
    local = stored.astimezone(ZoneInfo("America/St_Johns")).replace(microsecond=0)
    assert shown == [local.isoformat(), "infinity"]
    plain = run_cli(["status", *args], env={"PGTZ": "America/St_Johns"})
    assert plain.returncode == 0, plain
    assert local.isoformat() in plain.stdout and "infinity" in plain.stdout


@pytest.mark.parametrize(
    ("zone", "stored", "shown"),
    [
        ("Europe/Amsterdam", "1890-01-01 00:00Z", "1890-01-01T00:19:32+00:19:32"),
        ("Africa/Monrovia", "1960-06-01 12:00Z", "1960-06-01T11:15:30-00:44:30"),
        ("Asia/Kolkata", "1960-06-01 12:00Z", "1960-06-01T17:30:00+05:30"),
        ("Africa/Monrovia", "1973-01-01 12:00Z", "1973-01-01T12:00:00+00:00"),
    ],
)
def test_an_old_utc_offset_keeps_its_seconds(
    tmp_path: Path, dsn: str, zone: str, stored: str, shown: str
) -> None:
    """An offset of seconds (local mean time, Liberia until 1972) used to lose them:
    `+00:19` names an instant 32 s off. Python reads the offset back exactly."""
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    migrate(dsn, tree)
    execute(dsn, f"UPDATE schema_migrations SET applied_at = '{stored}'")
    execute(dsn, f"UPDATE schema_migrations_history SET started_at = '{stored}'")
    args = ["-d", dsn, "--dir", str(tree)]
    r = run_cli(["status", "--json", *args], env={"PGTZ": zone})
    [m] = json.loads(r.stdout)["migrations"]
    assert m["applied_at"] == shown
    instant = datetime.fromisoformat(stored.replace("Z", "+00:00"))
    assert datetime.fromisoformat(m["applied_at"]) == instant
    h = run_cli(["history", "--json", *args], env={"PGTZ": zone})
    [row] = json.loads(h.stdout)
    assert datetime.fromisoformat(row["started_at"]) == instant


def test_status_json_on_an_empty_database(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;"})
    data = status_json(dsn, tree)
    assert data["current_version"] == 0
    assert data["pending"] == 1
    assert [m["state"] for m in data["migrations"]] == ["pending"]
    assert user_tables(dsn) == []


def test_status_json_names_a_custom_table(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;"})
    migrate(dsn, tree, table="ops.migrations")
    data = status_json(dsn, tree, "--table", "ops.migrations")
    assert data["table"] == "ops.migrations"
    assert data["current_version"] == 1
    assert data["pending"] == 0


def test_status_exits_0_whatever_the_states(tmp_path: Path, dsn: str) -> None:
    tree = every_state(tmp_path, dsn)
    assert vz(dsn, tree, "status").returncode == 0


def test_status_exit_code_is_0_when_every_version_is_applied(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/002_b_up.sql": "SELECT 1;"})
    migrate(dsn, tree)
    assert vz(dsn, tree, "status", "--exit-code").returncode == 0
    r = vz(dsn, tree, "status", "--exit-code", "--json")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["pending"] == 0


def test_status_exit_code_is_3_when_anything_is_pending(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/002_b_up.sql": "SELECT 1;"})
    migrate(dsn, tree, to=1)
    r = vz(dsn, tree, "status", "--exit-code")
    assert r.returncode == 3, r
    assert "pending" in r.stdout
    r = vz(dsn, tree, "status", "--exit-code", "--json")
    assert r.returncode == 3, r
    assert json.loads(r.stdout)["pending"] == 1


def test_status_exit_code_is_3_for_modified_missing_dirty_or_out_of_order(
    tmp_path: Path, dsn: str
) -> None:
    for case in ("modified", "missing", "dirty", "out-of-order"):
        tree = write_tree(tmp_path / case, {"up/001_a_up.sql": "SELECT 1;"})
        execute(dsn, "DROP TABLE IF EXISTS schema_migrations, schema_migrations_history")
        migrate(dsn, tree)
        if case == "modified":
            (tree / "up" / "001_a_up.sql").write_text("SELECT 2;")
        elif case == "missing":
            (tree / "up" / "001_a_up.sql").unlink()
        elif case == "out-of-order":  # 2 applied, then 1 appears below it
            (tree / "up" / "001_a_up.sql").rename(tree / "up" / "002_a_up.sql")
            execute(dsn, "UPDATE schema_migrations SET version = 2")
            write_tree(tree, {"up/001_early_up.sql": "SELECT 1;"})
        else:
            execute(dsn, "UPDATE schema_migrations SET dirty = true")
        r = vz(dsn, tree, "status", "--exit-code")
        assert r.returncode == 3, (case, r)
        states = [line.split()[2] for line in r.stdout.splitlines()[1:]]
        assert sorted(set(states) - {"applied"}) == [case], (case, r)


def test_status_exit_code_is_0_with_no_versions_at_all(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {})
    r = vz(dsn, tree, "status", "--exit-code")
    assert r.returncode == 0, r
    assert user_tables(dsn) == []


def test_status_writes_no_history(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/002_b_up.sql": "SELECT 1;"})
    migrate(dsn, tree, to=1)
    before = history(dsn)
    assert vz(dsn, tree, "status").returncode == 0
    assert vz(dsn, tree, "status", "--json").returncode == 0
    assert history(dsn) == before
    assert applied_versions(dsn) == [1]


def test_status_refuses_a_foreign_tracking_table_with_exit_2(tmp_path: Path, dsn: str) -> None:
    execute(dsn, "CREATE TABLE schema_migrations (version bigint, dirty boolean)")
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;"})
    r = vz(dsn, tree, "status", "--json")
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert "not a vezamig tracking table" in r.stderr
    assert user_tables(dsn) == ["public.schema_migrations"]


@pytest.mark.parametrize("command", ["status", "baseline", "repair"])
def test_a_directive_error_in_an_up_file_is_a_layout_error_for_every_command(
    tmp_path: Path, dsn: str, command: str
) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "-- vezamig:gaurd SELECT true\nSELECT 1;\n"})
    extra = {"baseline": ["--version", "1"], "repair": ["--checksums", "--yes"]}.get(command, [])
    r = vz(dsn, tree, command, *extra)
    assert r.returncode == 2, r
    assert f"{tree / 'up' / '001_a_up.sql'}:1: unknown directive `vezamig:gaurd`" in r.stderr
    assert user_tables(dsn) == []


def test_the_terminal_tables_show_stored_text_literally_never_as_markup(
    tmp_path: Path, dsn: str
) -> None:
    """Names and messages come from files and the database: `[/]` must not crash rich,
    and `[bold red]…[/]` or `[link=…]` must not style or link anything."""
    from helpers import run_cli_on_terminal

    tree = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    migrate(dsn, tree)
    execute(
        dsn,
        "INSERT INTO schema_migrations SELECT 700, 'gone_[/]', checksum, applied_at,"
        " applied_by, duration_ms, false FROM schema_migrations WHERE version = 1;"
        " INSERT INTO schema_migrations SELECT 701, '[bold red]evil[/] [link=http://x]y[/link]',"
        " checksum, applied_at, applied_by, duration_ms, false FROM schema_migrations"
        " WHERE version = 1;"
        " UPDATE schema_migrations_history SET message = 'guard said [/] no'",
    )
    env = {"COLUMNS": "200"}
    for command in ("status", "history"):
        r = run_cli_on_terminal([command, "-d", dsn, "--dir", str(tree)], "", env=env)
        assert r.returncode == 0, r
        assert "Traceback" not in r.stdout and "MarkupError" not in r.stdout
    status = run_cli_on_terminal(["status", "-d", dsn, "--dir", str(tree)], "", env=env)
    assert "gone_[/]" in status.stdout
    assert "[bold red]evil[/] [link=http://x]y[/link]" in status.stdout
    assert "\x1b]8;" not in status.stdout  # no hyperlink escape
    history_out = run_cli_on_terminal(["history", "-d", dsn, "--dir", str(tree)], "", env=env)
    assert "guard said [/] no" in history_out.stdout


def test_a_narrow_terminal_never_cuts_a_version_or_a_state(tmp_path: Path, dsn: str) -> None:
    from helpers import run_cli_on_terminal

    tree = write_tree(
        tmp_path,
        {
            "up/20240101120000_a_long_enough_name_up.sql": "SELECT 1;\n",
            "up/20240101120001_b_up.sql": "SELECT 1;\n",
        },
    )
    migrate(dsn, tree, to=20240101120000)
    r = run_cli_on_terminal(
        ["status", "-d", dsn, "--dir", str(tree)], "", env={"COLUMNS": "40", "NO_COLOR": "1"}
    )
    assert r.returncode == 0, r
    for text in ("20240101120000", "20240101120001", "applied", "pending"):
        assert text in r.stdout, (text, r.stdout)


def test_status_and_a_no_op_up_read_plain_headers_without_the_parser_up_lexes_what_it_runs(
    tmp_path: Path, dsn: str
) -> None:
    """A command reads a plain directive header without pglast (≈ 30 ms of every
    `status` or no-op `up` on a history with a `vezamig:no-transaction` file) and lexes
    whole only the files it runs: `up` refuses a broken one before any step."""
    from helpers import modules_loaded

    def loads_pglast(*args: str) -> bool:
        return "pglast" in modules_loaded([*args, "-d", dsn, "--dir", str(tree)])

    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "up/002_b_up.sql": "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY b ON a (id);",
        },
    )
    assert vz(dsn, tree, "up").returncode == 0
    assert not loads_pglast("status")
    assert not loads_pglast("up")  # nothing to do
    (tree / "up" / "003_c_up.sql").write_text(
        "-- vezamig:no-transaction\nSELECT 'unterminated;\n", encoding="utf-8"
    )
    assert not loads_pglast("status")
    status = vz(dsn, tree, "status")
    assert re.search(r"^\s+3\s+c\s+pending", status.stdout, re.M), status
    for args in (["up"], ["up", "--dry-run"]):
        up = vz(dsn, tree, *args)
        assert up.returncode == 2, up
        assert f"{tree / 'up' / '003_c_up.sql'}:2:8: unterminated quoted string" in up.stderr
        assert "nothing was changed" in up.stderr
    # Above --to, the file is not run, so not lexed: as a broken file without directives.
    assert vz(dsn, tree, "up", "--to", "2").returncode == 0
    assert [r["version"] for r in json.loads(vz(dsn, tree, "status", "--json").stdout)[
        "migrations"] if r["state"] == "applied"] == [1, 2]  # fmt: skip
