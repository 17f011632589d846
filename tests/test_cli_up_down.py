"""`vezamig up` and `vezamig down` through the real entry point (SPEC §3, §5).

Each test runs ``python -m vezamig`` in a subprocess, then checks the exit
code, what was printed where, and the database as another session sees it.
"""

from __future__ import annotations

import os
import re
import select
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
    migrate,
    query,
    run_cli,
    run_cli_on_terminal,
    start_cli,
    table_exists,
    user_tables,
    wait_for,
    write_tree,
)

from vezamig.db import acquire_run_lock, connect, release_run_lock


def vz(dsn: str, tree: Path, command: str, *args: str, **kwargs: object) -> CliResult:
    """``vezamig COMMAND -d DSN --dir TREE ARGS`` (options after the command name)."""
    return run_cli([command, "-d", dsn, "--dir", str(tree), *args], **kwargs)  # type: ignore[arg-type]


def outcomes(dsn: str) -> list[tuple[int, str, str]]:
    return [(r["version"], r["direction"], r["outcome"]) for r in history(dsn)]


def reversible(*versions: int) -> dict[str, str]:
    """Versions that each create table tN and drop it again."""
    files: dict[str, str] = {}
    for v in versions:
        files[f"up/{v:03d}_t{v}_up.sql"] = f"CREATE TABLE t{v} (id int);\n"
        files[f"down/{v:03d}_t{v}_down.sql"] = f"DROP TABLE t{v};\n"
    return files


# ---- up ----------------------------------------------------------------------------------


def test_up_applies_every_pending_version_and_exits_0(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 3))
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert "applied 3 version(s)" in r.stdout
    assert "current version 3" in r.stdout
    assert r.stderr == ""
    assert applied_versions(dsn) == [1, 2, 3]
    assert all(table_exists(dsn, f"t{v}") for v in (1, 2, 3))
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "ok"), (3, "up", "ok")]


def test_up_twice_does_nothing_the_second_time(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1))
    migrate(dsn, tree)
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert "nothing to do" in r.stdout
    assert outcomes(dsn) == [(1, "up", "ok")]


def test_up_to_applies_only_versions_up_to_v(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 3))
    r = vz(dsn, tree, "up", "--to", "2")
    assert r.returncode == 0, r
    assert applied_versions(dsn) == [1, 2]
    assert not table_exists(dsn, "t3")


def test_an_sql_error_mid_run_exits_1_and_keeps_the_steps_before_it(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_users_up.sql": "CREATE TABLE users (id int PRIMARY KEY, name text);\n",
            "up/002_emails_up.sql": (
                "-- add emails\n"
                "CREATE TABLE emails (id int);\n"
                "INSERT INTO users VALUES (1, 'a');\n"
                "SELECT nmae FROM users;\n"
            ),
            "up/003_later_up.sql": "CREATE TABLE later ();\n",
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    path = tree / "up" / "002_emails_up.sql"
    assert f"{path}:4:8: 42703" in r.stderr
    assert 'column "nmae" does not exist' in r.stderr
    assert "hint: Perhaps you meant" in r.stderr
    assert "> 4 | SELECT nmae FROM users;" in r.stderr
    assert re.findall(r"> \d+ \|", r.stderr) == ["> 4 |"]  # one excerpt, at the error
    assert "rolled back" in r.stderr
    assert "ok" in r.stdout and "users" in r.stdout  # the first step was reported done
    assert table_exists(dsn, "users")
    assert not table_exists(dsn, "emails")
    assert query(dsn, "SELECT count(*) FROM users") == [(0,)]
    assert not table_exists(dsn, "later")
    assert applied_versions(dsn) == [1]
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "failed")]


def test_a_failed_step_shows_postgresqls_detail(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {"up/001_t_up.sql": "CREATE TABLE t (id int UNIQUE);\nINSERT INTO t VALUES (7), (7);\n"},
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert "23505" in r.stderr
    assert "Key (id)=(7) already exists." in r.stderr
    assert f"{tree / 'up' / '001_t_up.sql'}:2:1: 23505" in r.stderr
    assert "> 2 | INSERT INTO t VALUES (7), (7);" in r.stderr
    assert not table_exists(dsn, "t")


def test_a_failed_step_in_a_cr_only_file_names_the_line_an_editor_shows(
    tmp_path: Path, dsn: str
) -> None:
    text = b"-- t\rCREATE TABLE t (id int UNIQUE);\rINSERT INTO t VALUES (7), (7);\r"
    tree = write_tree(tmp_path, {"up/001_t_up.sql": text})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert f"{tree / 'up' / '001_t_up.sql'}:3:1: 23505" in r.stderr
    assert "> 3 | INSERT INTO t VALUES (7), (7);" in r.stderr
    assert not table_exists(dsn, "t")


def test_a_lock_directive_that_fails_names_its_line_column_and_shows_it(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_x_up.sql": (
                "-- x\n-- vezamig:lock pg_class\n-- vezamig:lock public.nosuchtable\nSELECT 1;\n"
            )
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    path = tree / "up" / "001_x_up.sql"
    assert f'{path}:3:17: 42P01 relation "public.nosuchtable" does not exist' in r.stderr
    assert "> 3 | -- vezamig:lock public.nosuchtable" in r.stderr
    assert applied_versions(dsn) == []


@pytest.mark.parametrize(
    ("header", "where"),
    [
        ("-- vezamig:lock tracks_old, tracks\n", "1:29"),  # not inside tracks_old
        ("-- vezamig:lock tracks_old, Tracks\n", "1:29"),  # folded, as PostgreSQL does
        ('-- vezamig:lock tracks_old, "tra""cks"\n', "1:29"),
        ("/* vezamig:lock tracks_old,\n   tracks */\n", "2:4"),  # a block over two lines
    ],
)
def test_a_failing_lock_points_at_the_table_postgresql_named(
    tmp_path: Path, dsn: str, header: str, where: str
) -> None:
    execute(dsn, "CREATE TABLE tracks_old ()")
    tree = write_tree(tmp_path, {"up/001_x_up.sql": header + "SELECT 1;\n"})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert f"001_x_up.sql:{where}: 42P01" in r.stderr


def test_statement_timeout_fails_a_slow_step_with_exit_1_and_rolls_it_back(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path, {"up/001_slow_up.sql": "CREATE TABLE t ();\nSELECT pg_sleep(10);\n"}
    )
    r = vz(dsn, tree, "up", "--statement-timeout", "200ms")
    assert r.returncode == 1, r
    assert "57014" in r.stderr and "statement timeout" in r.stderr
    assert not table_exists(dsn, "t")
    assert applied_versions(dsn) == []
    assert outcomes(dsn) == [(1, "up", "failed")]


# ---- guards --------------------------------------------------------------------------------


def test_a_guard_that_releases_the_run_lock_refuses_its_step(tmp_path: Path, dsn: str) -> None:
    # SPEC §5: one run at a time. A savepoint's rollback does not give a session lock
    # back, so a guard calling pg_advisory_unlock_all() would let a second run in.
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "CREATE TABLE a ();\n",
            "up/002_b_up.sql": (
                "-- vezamig:guard SELECT pg_advisory_unlock_all()::text = ''\nCREATE TABLE b ();\n"
            ),
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 3, r
    assert "up 2 (b) refused by its guard" in r.stderr
    assert "released vezamig's run lock" in r.stderr
    assert "Traceback" not in r.output and "WARNING" not in r.output
    assert applied_versions(dsn) == [1] and not table_exists(dsn, "b")
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "refused")]


@pytest.mark.parametrize("mode", ["", "-- vezamig:no-transaction\n"])
def test_a_dry_run_judges_a_guard_that_releases_session_locks_as_the_real_run_does(
    tmp_path: Path, dsn: str, mode: str
) -> None:
    # A dry run takes no run lock, and said "passes now", exit 0, where the real run
    # refuses: it now holds a probe lock of its own for its guards.
    guard = "-- vezamig:guard SELECT true FROM (SELECT pg_advisory_unlock_all()) s\n"
    tree = write_tree(tmp_path, {"up/001_a_up.sql": guard + mode + "CREATE TABLE a ();\n"})
    dry = vz(dsn, tree, "up", "--dry-run")
    assert dry.returncode == 3, dry
    assert "REFUSES now" in dry.stdout and "released vezamig's run lock" in dry.stderr
    assert "WARNING" not in dry.output
    real = vz(dsn, tree, "up")
    assert real.returncode == 3, real
    assert "released vezamig's run lock" in real.stderr
    assert not table_exists(dsn, "a")
    # A later step's guard is judged on its own (the probe is held again for it).
    write_tree(tmp_path, {"up/002_b_up.sql": "-- vezamig:guard SELECT true\n" + mode})
    dry = vz(dsn, tree, "up", "--dry-run")
    assert "guard of up 1 would refuse now" in dry.stderr
    assert "guard of up 2" not in dry.stderr
    assert "SELECT true → passes now" in dry.stdout
    # An ordinary guard passes, and the probe lock is gone with the dry run's end.
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "-- vezamig:guard SELECT true\n" + mode})
    assert vz(dsn, tree, "up", "--dry-run").returncode == 0
    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert query(dsn, held) == [(0,)]


def test_what_a_guard_sets_is_undone_before_the_body_is_parsed(tmp_path: Path, dsn: str) -> None:
    # With standard_conforming_strings off, `'x\''` hides the COMMIT that follows
    # from vezamig's lexer; the server must not lex the body that way either.
    up = (
        "-- vezamig:guard SELECT set_config('standard_conforming_strings', 'off', false)"
        " = 'off'\n"
        "CREATE TABLE a1 (x text);\n"
        "INSERT INTO a1 VALUES ('x\\''); COMMIT; CREATE TABLE leaked (i int); --');\n"
    )
    tree = write_tree(tmp_path, {"up/001_a_up.sql": up})
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    # Lexed with it on, as vezamig lexed it: one string, no COMMIT, nothing leaked.
    assert query(dsn, "SELECT x FROM a1") == [("x\\'); COMMIT; CREATE TABLE leaked (i int); --",)]
    assert not table_exists(dsn, "leaked")
    assert applied_versions(dsn) == [1]


def test_a_failing_statement_of_a_file_pglast_cannot_parse_is_named(
    tmp_path: Path, dsn: str
) -> None:
    body = "CREATE TABLE s (system_user text);\nSELECT 1;\nSELECT 1/0;\n"
    tree = write_tree(tmp_path, {"up/001_w_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert f"{tree / 'up' / '001_w_up.sql'}:3:1: 22012 division by zero" in r.stderr
    assert "> 3 | SELECT 1/0;" in r.stderr
    assert "came at COMMIT" not in r.stderr


@pytest.mark.parametrize(
    ("guard", "returned"),
    [
        ("SELECT false", "false"),
        ("SELECT NULL::boolean", "NULL"),
        ("SELECT true WHERE false", "no row"),
        ("SELECT true FROM generate_series(1, 2)", "2 rows"),
        ("SELECT 1", "1 (an int4, not a boolean)"),
        ("SELECT 'true'", "'true' (a text, not a boolean)"),
        ("SELECT nope FROM t", "an error: 42703"),
    ],
)
def test_a_refusing_guard_exits_3_naming_file_line_query_and_result(
    tmp_path: Path, dsn: str, guard: str, returned: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n",
            "down/001_t_down.sql": f"-- why: keep data\n-- vezamig:guard {guard}\nDROP TABLE t;\n",
        },
    )
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 3, r
    assert f"{tree / 'down' / '001_t_down.sql'}:2" in r.stderr
    assert guard in r.stderr
    assert f"returned: {returned}" in r.stderr
    assert query(dsn, "SELECT id FROM t") == [(1,)]
    assert applied_versions(dsn) == [1]
    assert outcomes(dsn) == [(1, "up", "ok"), (1, "down", "refused")]


def test_a_passing_guard_lets_down_run(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\n",
            "down/001_t_down.sql": (
                "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)\nDROP TABLE t;\n"
            ),
        },
    )
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 0, r
    assert not table_exists(dsn, "t")
    assert outcomes(dsn) == [(1, "up", "ok"), (1, "down", "ok")]


def test_a_guard_that_tries_to_delete_data_is_refused_up_front_and_deletes_nothing(
    tmp_path: Path, dsn: str
) -> None:
    # Seen in the guard's tree: a directive problem (exit 2) before anything runs. A
    # write the tree cannot show (inside a function) is refused by the read-only
    # savepoint instead: test_runner.py::test_a_guard_can_never_change_data.
    up_file = "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1), (2);\n"
    tree = write_tree(tmp_path, {"up/001_t_up.sql": up_file})
    migrate(dsn, tree)
    write_tree(
        tmp_path,
        {
            "down/001_t_down.sql": (
                "-- vezamig:guard WITH d AS (DELETE FROM t RETURNING 1) SELECT true\n"
                "DROP TABLE t;\n"
            ),
        },
    )
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 2, r
    assert "001_t_down.sql:1: guard must only read, but has a DELETE" in r.stderr
    assert query(dsn, "SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    assert applied_versions(dsn) == [1]


# ---- preflight refusals ------------------------------------------------------------------------


def test_down_of_irreversible_versions_exits_3_naming_all_of_them(tmp_path: Path, dsn: str) -> None:
    files = reversible(1, 3)
    files["up/002_keep_up.sql"] = "CREATE TABLE keep ();"
    files["up/004_keep_too_up.sql"] = "CREATE TABLE keep_too ();"
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0", "--yes")
    assert r.returncode == 3, r
    assert "irreversible" in r.stderr
    assert "2 (keep)" in r.stderr and "4 (keep_too)" in r.stderr
    assert applied_versions(dsn) == [1, 2, 3, 4]
    assert table_exists(dsn, "t3")
    assert len(history(dsn)) == 4


def test_a_modified_applied_file_is_drift_and_refuses_up_and_down(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree, to=1)
    (tree / "up" / "001_t1_up.sql").write_text("CREATE TABLE t1 (id bigint);\n")
    r = vz(dsn, tree, "up")
    assert r.returncode == 3, r
    assert "version 1 (t1) is modified" in r.stderr
    assert "001_t1_up.sql" in r.stderr
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 3, r
    assert "modified" in r.stderr
    assert applied_versions(dsn) == [1]
    assert not table_exists(dsn, "t2")


def test_a_crlf_checkout_of_an_applied_file_is_not_drift(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_a_up.sql": "CREATE TABLE a ();\nSELECT 1;\n"})
    migrate(dsn, tree)
    (tree / "up" / "001_a_up.sql").write_bytes(b"CREATE TABLE a ();\r\nSELECT 1;\r\n")
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert "nothing to do" in r.stdout


def test_a_dirty_version_refuses_up_and_down(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree, to=1)
    execute(dsn, "UPDATE schema_migrations SET dirty = true WHERE version = 1")
    for args in (["up"], ["down", "--yes"]):
        r = vz(dsn, tree, *args)
        assert r.returncode == 3, r
        assert "version 1 (t1) is dirty" in r.stderr
        assert "repair" in r.stderr
    assert applied_versions(dsn) == [1]
    assert table_exists(dsn, "t1") and not table_exists(dsn, "t2")


def test_out_of_order_pending_versions_refuse_up_unless_allowed(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 3))
    migrate(dsn, tree)
    write_tree(tree, reversible(2))
    r = vz(dsn, tree, "up")
    assert r.returncode == 3, r
    assert "out-of-order" in r.stderr and "2" in r.stderr
    assert applied_versions(dsn) == [1, 3]
    r = vz(dsn, tree, "up", "--allow-out-of-order")
    assert r.returncode == 0, r
    assert applied_versions(dsn) == [1, 2, 3]
    assert table_exists(dsn, "t2")


def test_every_refusal_reason_is_listed_at_once(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 4))
    migrate(dsn, tree)
    execute(dsn, "UPDATE schema_migrations SET dirty = true WHERE version = 1")
    (tree / "up" / "002_t2_up.sql").write_text("-- edited\nCREATE TABLE t2 (id int);\n")
    write_tree(tree, reversible(3))
    r = vz(dsn, tree, "up")
    assert r.returncode == 3, r
    for needle in ("version 1 (t1) is dirty", "version 2 (t2) is modified", "out-of-order"):
        assert needle in r.stderr
    assert applied_versions(dsn) == [1, 2, 4]
    assert not table_exists(dsn, "t3")


# ---- down ------------------------------------------------------------------------------------


def test_down_without_to_rolls_back_only_the_latest_version(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 3))
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 0, r
    assert "2 stays applied" in r.stdout
    assert applied_versions(dsn) == [1, 2]
    assert table_exists(dsn, "t2") and not table_exists(dsn, "t3")
    assert outcomes(dsn)[-1] == (3, "down", "ok")


def test_down_to_v_rolls_back_every_version_above_it_descending_and_says_v_stays(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, reversible(983, 984, 985, 986))
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "984", "--yes")
    assert r.returncode == 0, r
    assert "984 stays applied" in r.stdout
    assert applied_versions(dsn) == [983, 984]
    assert [h[0] for h in outcomes(dsn) if h[1] == "down"] == [986, 985]


def test_down_to_0_rolls_back_everything(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0", "--yes")
    assert r.returncode == 0, r
    assert "nothing stays applied" in r.stdout
    assert applied_versions(dsn) == []
    assert user_tables(dsn) == [
        "public.schema_migrations",
        "public.schema_migrations_history",
    ]


def test_down_to_a_version_that_is_not_applied_is_a_usage_error(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 3))
    migrate(dsn, tree, to=2)
    for v in ("3", "7"):
        r = vz(dsn, tree, "down", "--to", v, "--yes")
        assert r.returncode == 2, r
        assert f"version {v} is not applied" in r.stderr
    assert applied_versions(dsn) == [1, 2]


def test_down_with_nothing_applied_does_nothing(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1))
    r = vz(dsn, tree, "down")
    assert r.returncode == 0, r
    assert "nothing to roll back" in r.stdout
    assert user_tables(dsn) == []


def test_down_without_a_terminal_and_without_yes_is_refused(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0")
    assert r.returncode == 3, r
    assert "--yes" in r.stderr
    assert "1 t1" in r.stdout and "2 t2" in r.stdout  # the plan was shown first
    assert applied_versions(dsn) == [1, 2]
    assert table_exists(dsn, "t1") and table_exists(dsn, "t2")
    assert len(history(dsn)) == 2


@pytest.mark.parametrize("answer", ["y", "yes", "  y "])
def test_down_on_a_terminal_proceeds_on_y_or_yes(tmp_path: Path, dsn: str, answer: str) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    r = run_cli_on_terminal(["down", "-d", dsn, "--dir", str(tree)], answer)
    assert r.returncode == 0, r
    assert "[y/N]" in r.stdout
    assert "1 stays applied" in r.stdout
    assert applied_versions(dsn) == [1]


@pytest.mark.parametrize("answer", ["n", "", "yep", "Y", "YES"])
def test_down_on_a_terminal_declines_on_anything_else(
    tmp_path: Path, dsn: str, answer: str
) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    r = run_cli_on_terminal(["down", "-d", dsn, "--dir", str(tree)], answer)
    assert r.returncode == 3, r
    assert f"not confirmed ({answer!r} is not y or yes)" in r.stdout
    assert applied_versions(dsn) == [1, 2]
    assert len(history(dsn)) == 2


# ---- dry run ---------------------------------------------------------------------------------


DRY = {
    "up/001_t_up.sql": "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n",
    "down/001_t_down.sql": (
        "-- vezamig:lock t\n-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)\nDROP TABLE t;\n"
    ),
    "up/002_u_up.sql": "-- vezamig:guard SELECT to_regclass('u') IS NULL\nCREATE TABLE u ();\n",
    "down/002_u_down.sql": "-- vezamig:guard SELECT true\nDROP TABLE u;\n",
}


def test_up_dry_run_shows_the_plan_with_guard_results_and_changes_nothing(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, DRY)
    r = vz(dsn, tree, "up", "--dry-run")
    assert r.returncode == 0, r
    assert "up   1 t" in r.stdout and "up   2 u" in r.stdout
    assert "[transaction]" in r.stdout
    assert "SELECT to_regclass('u') IS NULL → passes now" in r.stdout
    assert "nothing was changed" in r.stdout
    assert user_tables(dsn) == []


def test_down_dry_run_exits_3_when_a_guard_would_refuse_and_needs_no_confirmation(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, DRY)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0", "--dry-run")  # no terminal, no --yes
    assert r.returncode == 3, r
    assert "down 2 u" in r.stdout and "down 1 t" in r.stdout
    assert r.stdout.index("down 2 u") < r.stdout.index("down 1 t")
    assert "lock t (ACCESS EXCLUSIVE)" in r.stdout
    assert "SELECT true → passes now" in r.stdout
    assert "REFUSES now: returned false" in r.stdout
    assert "nothing stays applied" in r.stdout
    assert "would be refused" in r.stderr
    assert applied_versions(dsn) == [1, 2]
    assert table_exists(dsn, "t") and table_exists(dsn, "u")
    assert len(history(dsn)) == 2


def test_down_dry_run_exits_0_when_the_real_run_would_proceed(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, DRY)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--dry-run")
    assert r.returncode == 0, r
    assert "1 stays applied" in r.stdout
    assert "[y/N]" not in r.output
    assert applied_versions(dsn) == [1, 2]


LOCKS_A_MISSING_TABLE = {
    "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
    "down/001_a_down.sql": (
        "-- vezamig:lock a\n-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM a)\nDROP TABLE a;\n"
    ),
}


def test_a_dry_run_says_the_first_step_fails_at_a_lock_on_a_missing_table_as_the_real_run_does(
    tmp_path: Path, dsn: str
) -> None:
    """The real step's LOCK fails (exit 1) before its guard runs: the dry run must not
    call the guard's error a refusal (exit 3); not refused, it exits 0 (SPEC §5) and
    warns that the real run would fail."""
    tree = write_tree(tmp_path, LOCKS_A_MISSING_TABLE)
    assert vz(dsn, tree, "baseline", "--version", "1").returncode == 0  # table a never made
    dry = vz(dsn, tree, "down", "--dry-run")
    assert dry.returncode == 0, dry
    assert "a does not exist now" in dry.stdout
    assert "not evaluated: its lock cannot be taken now" in dry.stdout
    assert "REFUSES" not in dry.output
    assert (
        "warning: not refused, but the real `down` would fail: "
        f"{tree / 'down' / '001_a_down.sql'}:1: down 1 locks a, which does not exist"
    ) in dry.stderr
    real = vz(dsn, tree, "down", "--yes")
    assert real.returncode == 1, real
    assert "42P01" in real.stderr


@pytest.mark.parametrize(
    ("make", "what"),
    [
        ("CREATE SEQUENCE a", "is a sequence"),
        ("CREATE TABLE t (id int); CREATE INDEX a ON t (id)", "is an index"),
        ("CREATE MATERIALIZED VIEW a AS SELECT 1 AS id", "is a materialized view"),
    ],
    ids=["sequence", "index", "matview"],
)
def test_a_dry_run_says_a_lock_on_what_lock_table_refuses_fails_as_the_real_run_does(
    tmp_path: Path, dsn: str, make: str, what: str
) -> None:
    tree = write_tree(tmp_path, LOCKS_A_MISSING_TABLE)
    assert vz(dsn, tree, "baseline", "--version", "1").returncode == 0
    execute(dsn, make)
    dry = vz(dsn, tree, "down", "--dry-run")
    assert dry.returncode == 0, dry
    assert "warning: not refused, but the real `down` would fail" in dry.stderr
    assert f"001_a_down.sql:1: down 1 locks a, which {what}" in dry.stderr
    assert f"→ a {what} now" in dry.stdout
    real = vz(dsn, tree, "down", "--yes")
    assert real.returncode == 1, real
    assert "cannot lock relation" in real.stderr


def test_a_dry_run_of_a_refused_plan_exits_3_and_names_the_lock_its_first_step_would_fail_at(
    tmp_path: Path, dsn: str
) -> None:
    """The real run refuses the plan (a modified file) before any step: exit 3."""
    tree = write_tree(tmp_path, LOCKS_A_MISSING_TABLE)
    assert vz(dsn, tree, "baseline", "--version", "1").returncode == 0
    (tree / "up/001_a_up.sql").write_text("CREATE TABLE a (id int);  -- edited\n")
    dry = vz(dsn, tree, "down", "--dry-run")
    real = vz(dsn, tree, "down", "--yes")
    assert dry.returncode == real.returncode == 3, (dry, real)
    assert "locks a, which does not exist" in dry.stderr  # still said


def test_a_dry_run_notes_a_lock_on_a_table_an_earlier_step_may_create(
    tmp_path: Path, dsn: str
) -> None:
    files = {
        "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
        "up/002_b_up.sql": (
            "-- vezamig:lock a\n-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM a)\n"
            "ALTER TABLE a ADD COLUMN b int;\n"
        ),
    }
    tree = write_tree(tmp_path, files)
    dry = vz(dsn, tree, "up", "--dry-run")
    assert dry.returncode == 0, dry
    assert "002_b_up.sql:1: up 2 locks a, which does not exist now; one of the 1 earlier" in (
        dry.stdout
    )
    assert vz(dsn, tree, "up").returncode == 0
    assert applied_versions(dsn) == [1, 2]


def test_dry_run_exits_3_on_a_preflight_refusal(tmp_path: Path, dsn: str) -> None:
    files = reversible(1)
    files["up/002_irr_up.sql"] = "CREATE TABLE irr ();"
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--dry-run")
    assert r.returncode == 3, r
    assert "irreversible" in r.stderr
    assert applied_versions(dsn) == [1, 2]


def test_a_dry_run_refused_for_other_reasons_still_shows_every_guard_result(
    tmp_path: Path, dsn: str
) -> None:
    # One dry run shows every blocker: here 3 is irreversible and 1's guard says no.
    files = dict(DRY)
    files["up/003_irr_up.sql"] = "CREATE TABLE irr ();"
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0", "--dry-run")
    assert r.returncode == 3, r
    assert "irreversible" in r.stderr
    assert "REFUSES now: returned false" in r.stdout
    assert "guard of down 1 would refuse now" in r.stderr
    assert applied_versions(dsn) == [1, 2, 3]


# ---- locks ---------------------------------------------------------------------------------


LOCKED = {
    "up/001_tracks_up.sql": "CREATE TABLE tracks (id int);\n",
    "up/002_backend_up.sql": (
        "-- vezamig:lock tracks\nALTER TABLE tracks ADD COLUMN storage_backend text;\n"
    ),
}


def test_a_conflicting_lock_held_elsewhere_exits_4_after_the_retries(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, LOCKED)
    migrate(dsn, tree, to=1)
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE tracks IN ACCESS SHARE MODE"):
        r = vz(dsn, tree, "up", "--lock-timeout", "200ms", "--lock-retries", "1")
    assert r.returncode == 4, r
    assert "lock timeout" in r.stderr
    assert "retry 1/1" in r.stderr
    assert query(
        dsn, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'storage_backend'"
    ) == [(0,)]
    assert applied_versions(dsn) == [1]
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "failed")]


def test_a_second_run_waits_for_the_run_lock_then_exits_4_naming_the_holder(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, reversible(1))
    holder = connect(dsn, application="deploy-bot")
    try:
        lock = acquire_run_lock(holder, 0)
        pid = holder.info.backend_pid
        r = vz(dsn, tree, "up", "--lock-wait", "300ms")
        release_run_lock(holder, lock)
    finally:
        holder.close()
    assert r.returncode == 4, r
    assert f"pid {pid}" in r.stderr
    assert "deploy-bot" in r.stderr
    assert "connected since" in r.stderr
    assert user_tables(dsn) == []


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["plain", "quiet"])
def test_a_down_that_fails_part_way_says_what_it_rolled_back_and_where_it_stands(
    tmp_path: Path, dsn: str, quiet: list[str]
) -> None:
    tree = write_tree(tmp_path, reversible(1, 2, 3))
    migrate(dsn, tree)
    execute(dsn, "CREATE VIEW v2 AS SELECT * FROM t2")
    r = vz(dsn, tree, "down", "--to", "0", "--yes", *quiet)
    assert r.returncode == 1, r
    assert "this run rolled back 3 (t3) before it; not run: 1 (t1); current version 2" in r.stderr
    assert applied_versions(dsn) == [1, 2]


@pytest.mark.parametrize(
    ("refused", "said"),
    [
        (2, "this run applied 1 (t1) before it; not run: 3 (t3); current version 1"),
        (1, "this run changed nothing before it; not run: 2 (t2), 3 (t3); current version 0"),
    ],
    ids=["second-step", "first-step"],
)
def test_an_up_refused_part_way_says_what_it_applied_and_what_it_did_not_run(
    tmp_path: Path, dsn: str, refused: int, said: str
) -> None:
    files = reversible(1, 2, 3)
    files[f"up/{refused:03d}_t{refused}_up.sql"] = (
        f"-- vezamig:guard SELECT false\nCREATE TABLE t{refused} (id int);\n"
    )
    r = vz(dsn, write_tree(tmp_path, files), "up")
    assert r.returncode == 3, r
    assert said in r.stderr


def test_a_run_of_one_step_needs_no_account_of_the_rest(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, {"up/001_bad_up.sql": "CREATE TABLE t1 (id int) oops;\n"})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert "this run" not in r.stderr


def test_the_holder_named_is_the_one_in_this_database(
    tmp_path: Path, dsn: str, make_database: Callable[[], str]
) -> None:
    """Runs in other databases of the server hold the same key (same table name): the
    waiting run names the session it waits for, not one of theirs."""
    tree = write_tree(tmp_path, reversible(1))
    holders = []
    try:
        for other in [make_database() for _ in range(4)] + [dsn]:
            holder = connect(other, application=f"holder of {other.rsplit('=', 1)[-1]}")
            acquire_run_lock(holder, 0)
            holders.append(holder)
        pids = [h.info.backend_pid for h in holders]
        r = vz(dsn, tree, "up", "--lock-wait", "300ms")
    finally:
        for holder in holders:
            holder.close()
    assert r.returncode == 4, r
    assert f"pid {pids[-1]}," in r.stderr
    assert not any(f"pid {pid}," in r.stderr for pid in pids[:-1])


def test_a_holder_whose_client_this_role_cannot_see_is_not_called_a_local_socket(
    tmp_path: Path, dsn: str
) -> None:
    from psycopg.conninfo import make_conninfo

    tree = write_tree(tmp_path, reversible(1))
    migrate(dsn, tree)
    role = f"vz_waiter_{os.getpid()}"
    execute(
        dsn,
        f"CREATE ROLE {role} LOGIN; GRANT ALL ON schema_migrations,"
        f" schema_migrations_history TO {role}",
    )
    holder = connect(dsn, application="deploy-bot")
    try:
        acquire_run_lock(holder, 0)
        pid = holder.info.backend_pid
        r = vz(make_conninfo(dsn, user=role), tree, "up", "--lock-wait", "300ms")
    finally:
        holder.close()
        execute(dsn, f"REVOKE ALL ON schema_migrations, schema_migrations_history FROM {role}")
        execute(dsn, f"DROP ROLE {role}")
    assert r.returncode == 4, r
    assert f"pid {pid}, application deploy-bot" in r.stderr
    assert "local socket" not in r.stderr and "None" not in r.stderr
    assert f"its client and start time are not visible to {role}" in r.stderr
    assert "pg_read_all_stats" in r.stderr


def test_concurrent_up_runs_apply_every_version_exactly_once(tmp_path: Path, dsn: str) -> None:
    files = {"up/001_log_up.sql": "CREATE TABLE log (v int NOT NULL);\n"}
    for v in range(2, 7):
        # Not idempotent: a second application would add a second row.
        files[f"up/{v:03d}_v{v}_up.sql"] = (
            f"INSERT INTO log VALUES ({v});\nSELECT pg_sleep(0.05);\n"
        )
    tree = write_tree(tmp_path, files)
    procs = [start_cli(["up", "-d", dsn, "--dir", str(tree)]) for _ in range(4)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0, 0, 0, 0], results
    assert query(dsn, "SELECT v, count(*) FROM log GROUP BY v ORDER BY v") == [
        (v, 1) for v in range(2, 7)
    ]
    assert applied_versions(dsn) == list(range(1, 7))
    assert outcomes(dsn) == [(v, "up", "ok") for v in range(1, 7)]


# ---- Ctrl-C ---------------------------------------------------------------------------------


def test_ctrl_c_cancels_the_running_statement_rolls_the_step_back_and_exits_130(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_first_up.sql": "CREATE TABLE first ();\n",
            "up/002_slow_up.sql": "CREATE TABLE slow ();\nSELECT pg_sleep(30);\n",
            "up/003_later_up.sql": "CREATE TABLE later ();\n",
        },
    )
    proc = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    try:
        wait_for(lambda: bool(backends_running(dsn, "pg_sleep(30)")), what="the slow step")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        _, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, stderr
    assert "interrupted" in stderr
    assert "rolled back" in stderr
    # What the run did, did not do, and where it stands: read after the stop too.
    assert "this run applied 1 (first) before it; not run: 3 (later); current version 1" in (stderr)
    assert backends_running(dsn, "pg_sleep(30)") == []
    assert table_exists(dsn, "first") and not table_exists(dsn, "slow")
    assert applied_versions(dsn) == [1]
    rows = history(dsn)
    assert [(r["version"], r["outcome"]) for r in rows] == [(1, "ok"), (2, "failed")]
    assert "interrupted" in rows[1]["message"]


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 30) -> str:
    """Read the child's stderr as it comes until ``needle`` shows up."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"never saw {needle!r}; stderr so far: {seen!r}")
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def test_ctrl_c_while_waiting_to_retry_a_lock_exits_130_and_records_the_step(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, LOCKED)
    migrate(dsn, tree, to=1)
    holder = connect(dsn)
    holder.execute("BEGIN; LOCK TABLE tracks IN ACCESS SHARE MODE")
    proc = start_cli(
        ["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "200ms", "--lock-retries", "5"]
    )
    try:
        read_until(proc, "retry 1/5")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert code == 130
    assert applied_versions(dsn) == [1]
    assert query(
        dsn, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'storage_backend'"
    ) == [(0,)]
    rows = history(dsn)
    assert [(r["version"], r["outcome"]) for r in rows] == [(1, "ok"), (2, "failed")]
    assert "interrupted" in rows[1]["message"]


def test_a_lock_released_while_the_step_waits_lets_it_succeed(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, LOCKED)
    migrate(dsn, tree, to=1)
    holder = connect(dsn)
    holder.execute("BEGIN; LOCK TABLE tracks IN ACCESS SHARE MODE")
    proc = start_cli(
        ["up", "-d", dsn, "--dir", str(tree), "--lock-timeout", "200ms", "--lock-retries", "3"]
    )
    try:
        wait_for(
            lambda: bool(
                query(
                    dsn,
                    "SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'tracks'::regclass",
                )
            ),
            what="the step to wait for the lock on tracks",
        )
        holder.close()
        code = proc.wait(timeout=30)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
        _, stderr = proc.communicate()
    assert code == 0, stderr
    assert applied_versions(dsn) == [1, 2]
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "ok")]


def test_a_failing_down_exits_1_and_leaves_the_version_applied(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\n",
            "down/001_t_down.sql": "DROP TABLE t;\nDROP TABLE not_there;\n",
        },
    )
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--yes")
    assert r.returncode == 1, r
    assert f"{tree / 'down' / '001_t_down.sql'}:2:" in r.stderr
    assert "42P01" in r.stderr
    assert table_exists(dsn, "t")
    assert applied_versions(dsn) == [1]
    assert outcomes(dsn) == [(1, "up", "ok"), (1, "down", "failed")]


def dry_down_while_t_is_locked(dsn: str, tree: Path) -> CliResult:
    """`down --to 0 --dry-run` while another session holds table t."""
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE"):
        return run_cli(
            ["down", "-d", dsn, "--dir", str(tree), "--to", "0", "--dry-run",
             "--lock-timeout", "200ms"],
            timeout=30,
        )  # fmt: skip


def test_dry_run_does_not_hang_on_a_guard_that_waits_for_a_lock(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, DRY)
    migrate(dsn, tree)
    r = dry_down_while_t_is_locked(dsn, tree)
    # No verdict, so not a refusal (3): the real run would wait, retry and exit 4.
    assert r.returncode == 4, r
    assert "cannot be evaluated now" in r.stdout and "55P03" in r.stdout
    assert "would wait and retry, then exit 4" in r.stderr
    assert "guard of down 1 cannot be evaluated now" in r.stderr
    assert applied_versions(dsn) == [1, 2]


def test_a_dry_run_with_a_refusal_and_a_guard_behind_a_lock_exits_3_naming_both(
    tmp_path: Path, dsn: str
) -> None:
    files = dict(DRY)
    files["down/002_u_down.sql"] = "-- vezamig:guard SELECT false\nDROP TABLE u;\n"
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    r = dry_down_while_t_is_locked(dsn, tree)
    assert r.returncode == 3, r
    assert "guard of down 2 would refuse now" in r.stderr
    assert "guard of down 1 cannot be evaluated now" in r.stderr
    assert applied_versions(dsn) == [1, 2]


def test_a_second_run_waits_for_the_run_lock_and_proceeds_once_it_is_free(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, reversible(1))
    holder = connect(dsn, application="deploy-bot")
    try:
        lock = acquire_run_lock(holder, 0)
        proc = start_cli(["up", "-d", dsn, "--dir", str(tree), "--lock-wait", "60s"])
        try:
            said = read_until(proc, "waiting up to 60s")
            assert f"pid {holder.info.backend_pid}" in said
            assert not table_exists(dsn, "t1")
            release_run_lock(holder, lock)
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    finally:
        holder.close()
    assert code == 0
    assert applied_versions(dsn) == [1]


def test_down_quiet_on_a_terminal_still_shows_the_plan_it_asks_about(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    r = run_cli_on_terminal(["down", "--quiet", "-d", dsn, "--dir", str(tree)], "y")
    assert r.returncode == 0, r
    assert "1 stays applied" in r.stdout
    assert applied_versions(dsn) == [1]


def test_ctrl_c_at_the_confirmation_prompt_is_an_interruption_not_a_no(
    tmp_path: Path, dsn: str
) -> None:
    import pty
    import sys

    from helpers import cli_env

    tree = write_tree(tmp_path, reversible(1, 2))
    migrate(dsn, tree)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vezamig", "down", "-d", dsn, "--dir", str(tree)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=cli_env(),
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"[y/N]" not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.1)[0]:
                seen += os.read(leader, 4096)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
        os.close(leader)
    assert applied_versions(dsn) == [1, 2]
    assert len(history(dsn)) == 2


def test_one_run_changes_a_database_at_a_time_whatever_its_table(tmp_path: Path, dsn: str) -> None:
    """SPEC §5: "Only one run changes a database at a time" — also a run for another
    tracking table (two histories in one database may touch the same objects), and
    whatever the sessions' search_path."""
    import psycopg

    from vezamig.errors import LockBusy

    tree = write_tree(tmp_path, reversible(1))
    execute(dsn, "CREATE SCHEMA app")
    with (
        psycopg.connect(dsn, autocommit=True) as holder,
        psycopg.connect(dsn, autocommit=True, options="-c search_path=app,public") as other,
    ):
        lock = acquire_run_lock(holder, 0)
        with pytest.raises(LockBusy, match="another vezamig run holds the lock on this database"):
            acquire_run_lock(other, 0)
        for table in ("schema_migrations", "app.other_history_table"):
            r = vz(dsn, tree, "up", "--table", table, "--lock-wait", "300ms")
            assert r.returncode == 4, r
            assert f"pid {holder.info.backend_pid}" in r.stderr
        # A step that changes search_path cannot make the release miss its lock.
        holder.execute("SET search_path = app")
        release_run_lock(holder, lock)
        assert acquire_run_lock(other, 0).key == lock.key
    assert user_tables(dsn) == []


@pytest.mark.parametrize("no_transaction", [False, True])
def test_a_guard_that_hits_statement_timeout_refuses_the_step_as_the_dry_run_says(
    tmp_path: Path, dsn: str, no_transaction: bool
) -> None:
    """A guard that cannot answer in time is an SQL error: a refusal (exit 3), naming the
    guard, in the real run as in the dry run (SPEC §2)."""
    header = "-- vezamig:no-transaction\n" if no_transaction else ""
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": (
                f"{header}-- vezamig:guard SELECT pg_sleep(5) IS NOT NULL\nSELECT 1;\n"
            )
        },
    )
    line = 2 if no_transaction else 1
    for dry in (["--dry-run"], []):
        r = vz(dsn, tree, "up", "--statement-timeout", "300ms", *dry)
        assert r.returncode == 3, r
        assert "57014 canceling statement due to statement timeout" in r.stderr
        assert "(--statement-timeout 300 ms)" in r.stderr
    assert f"{tree / 'up' / '001_a_up.sql'}:{line}" in r.stderr
    assert "SELECT pg_sleep(5) IS NOT NULL" in r.stderr
    assert applied_versions(dsn) == []
    assert outcomes(dsn) == [(1, "up", "refused")]


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--lock-timeout", "99999999h", "is longer than PostgreSQL's timeouts allow"),
        ("--statement-timeout", "999h", "is longer than PostgreSQL's timeouts allow"),
        ("--lock-wait", "5x", "cannot read `5x` as a duration"),
        # a float's infinity once made this an OverflowError traceback
        ("--lock-wait", "9" * 309, "is longer than PostgreSQL's timeouts allow"),
    ],
)
def test_a_bad_duration_is_exit_2_before_anything_runs(
    tmp_path: Path, dsn: str, option: str, value: str, says: str
) -> None:
    tree = write_tree(tmp_path, reversible(1))
    for dry in ([], ["--dry-run"]):
        r = vz(dsn, tree, "up", option, value, *dry)
        assert r.returncode == 2, r
        assert f"Invalid value for '{option}': " in r.stderr and says in r.stderr
        assert r.stderr.count(option) == 1  # named once, by click
    assert user_tables(dsn) == []


def test_a_down_plan_shows_the_irreversible_versions_it_would_touch(
    tmp_path: Path, dsn: str
) -> None:
    files = reversible(3)
    files["up/001_a_up.sql"] = "CREATE TABLE a ();\n"  # no down file
    files["up/002_b_up.sql"] = 'CREATE TABLE "My Tab""le" ();\n'
    files["down/002_b_down.sql"] = (
        '-- vezamig:lock "My Tab""le", public.t3\nDROP TABLE "My Tab""le";\n'
    )
    tree = write_tree(tmp_path, files)
    migrate(dsn, tree)
    r = vz(dsn, tree, "down", "--to", "0", "--dry-run")
    assert r.returncode == 3, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("dry run: roll back 3 version(s), from 3; nothing stays applied")
    assert [line.split()[:3] for line in lines[1:] if line.startswith("  down")] == [
        ["down", "3", "t3"],
        ["down", "2", "b"],
        ["down", "1", "a"],
    ]
    assert "  down 1 a  [irreversible: no down file]" in lines
    assert '         lock "My Tab""le", public.t3 (ACCESS EXCLUSIVE)' in lines
    assert "irreversible: no down file for 1 (a)" in r.stderr
    # Only the irreversible latest version: the plan names it instead of "nothing to do".
    r = vz(dsn, tree, "down", "--to", "2", "--dry-run")
    assert r.returncode == 0, r
    (tmp_path / "none").mkdir()  # an empty down folder: every version irreversible
    r = run_cli(["down", "--dry-run", "-d", dsn, "--up-dir", str(tree / "up"), "--down-dir",
                 str(tmp_path / "none")])  # fmt: skip
    assert r.returncode == 3, r
    assert "dry run: roll back 1 version(s), from 3; 2 stays applied" in r.stdout
    assert "  down 3 t3  [irreversible: no down file]" in r.stdout
    assert applied_versions(dsn) == [1, 2, 3]


def test_up_dry_run_says_when_a_refusing_guard_runs_after_earlier_steps(
    tmp_path: Path, dsn: str
) -> None:
    """A guard of a later step is evaluated against today's schema: the dry run refuses
    (it cannot know better without running the earlier steps) and says why."""
    tree = write_tree(
        tmp_path,
        {
            "up/001_t1_up.sql": "CREATE TABLE t1 (id int);\n",
            "up/002_g_up.sql": "-- vezamig:guard SELECT count(*) = 0 FROM t1\nSELECT 1;\n",
        },
    )
    r = vz(dsn, tree, "up", "--dry-run")
    assert r.returncode == 3, r
    assert (
        f"{tree / 'up' / '002_g_up.sql'}:1: guard of up 2 would refuse now: "
        "SELECT count(*) = 0 FROM t1 returned an error: 42P01"
    ) in r.stderr
    assert "before the 1 earlier step(s) of this run; it may pass once they have run" in r.stderr
    assert user_tables(dsn) == []
    assert vz(dsn, tree, "up").returncode == 0  # and indeed it does


def test_a_lock_timeout_is_retried_three_times_by_default(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(tmp_path, LOCKED)
    migrate(dsn, tree, to=1)
    with held_elsewhere(dsn, "BEGIN; LOCK TABLE tracks IN ACCESS SHARE MODE"):
        r = vz(dsn, tree, "up", "--lock-timeout", "100ms")  # no --lock-retries
    assert r.returncode == 4, r
    assert re.findall(r"retry (\d/\d)", r.stderr) == ["1/3", "2/3", "3/3"]
    assert applied_versions(dsn) == [1]
    assert outcomes(dsn) == [(1, "up", "ok"), (2, "up", "failed")]  # one row, final outcome


@pytest.mark.parametrize(
    "args",
    [["down", "--yes"], ["baseline", "--version", "1"], ["repair", "--checksums", "--yes"]],
    ids=["down", "baseline", "repair"],
)
def test_every_writing_command_waits_for_the_run_lock_then_exits_4(
    tmp_path: Path, dsn: str, args: list[str]
) -> None:
    tree = write_tree(tmp_path, reversible(1))
    if args[0] != "baseline":
        migrate(dsn, tree)
        (tree / "up" / "001_t1_up.sql").write_text("CREATE TABLE t1 (id int); -- edited\n")
    before = (applied_versions(dsn), history(dsn))
    holder = connect(dsn, application="deploy-bot")
    try:
        acquire_run_lock(holder, 0)
        pid = holder.info.backend_pid
        r = vz(dsn, tree, *args, "--lock-wait", "300ms")
    finally:
        holder.close()
    assert r.returncode == 4, r
    assert f"pid {pid}, application deploy-bot" in r.stderr
    assert "client local socket" in r.stderr or "client 127.0.0.1" in r.stderr
    assert "connected since" in r.stderr
    assert (applied_versions(dsn), history(dsn)) == before
    assert table_exists(dsn, "t1") == (args[0] != "baseline")


def test_the_plan_shows_each_steps_transaction_mode(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_t_up.sql": "CREATE TABLE t (id int);\n",
            "up/002_i_up.sql": (
                "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (id);\n"
            ),
        },
    )
    r = vz(dsn, tree, "up", "--dry-run")
    assert r.returncode == 0, r
    steps = [line.split() for line in r.stdout.splitlines() if line.startswith("  up")]
    assert [s[:4] for s in steps] == [
        ["up", "1", "t", "[transaction]"],
        ["up", "2", "i", "[no-transaction]"],
    ]


def test_steps_commit_durably_even_where_the_server_default_is_not(
    tmp_path: Path, dsn: str
) -> None:
    """A version reported applied must survive a crash: the test server runs with
    synchronous_commit = off, and every step must still see it on."""
    assert query(dsn, "SHOW synchronous_commit") == [("off",)]
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": (
                "CREATE TABLE seen AS SELECT current_setting('synchronous_commit') AS v;\n"
            ),
            "up/002_b_up.sql": (
                "-- vezamig:no-transaction\n"
                "INSERT INTO seen SELECT current_setting('synchronous_commit');\n"
            ),
        },
    )
    r = vz(dsn, tree, "up")
    assert r.returncode == 0, r
    assert query(dsn, "SELECT v FROM seen") == [("on",), ("on",)]


def test_a_pg_dump_copy_with_its_rows_inline_is_refused_before_anything_runs(
    tmp_path: Path, dsn: str
) -> None:
    """pg_dump's `COPY t FROM stdin;` + rows + `\\.` is not SQL the server can take in a
    step: refused up front, naming the COPY, with nothing created."""
    body = "CREATE TABLE cb (x int);\nCOPY cb (x) FROM stdin;\n1\n2\n\\.\n"
    tree = write_tree(tmp_path, {**reversible(1), "up/002_dump_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert f"{tree / 'up' / '002_dump_up.sql'}:2: `COPY … FROM STDIN` exchanges rows" in r.stderr
    assert user_tables(dsn) == []


@pytest.mark.parametrize(
    ("body", "way"),
    [
        ("CREATE TABLE x1 (id int);\nCOPY (SELECT 1) TO stdout;\n", "TO STDOUT"),
        ("CREATE TABLE x1 (id int);\nCOPY x1 FROM stdin;\n", "FROM STDIN"),
        ("-- vezamig:no-transaction\nCREATE TABLE x1 (id int);\nCOPY x1 TO STDOUT;\n", "TO STDOUT"),
    ],
)
def test_a_copy_that_talks_to_the_client_is_refused_before_anything_runs(
    tmp_path: Path, dsn: str, body: str, way: str
) -> None:
    """The server would go on with the step while the client failed: the outcome could
    not be reported truthfully, so such a step never starts."""
    tree = write_tree(tmp_path, {**reversible(1), "up/002_x_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 2, r
    assert f"{tree / 'up' / '002_x_up.sql'}:{body.count(chr(10))}: `COPY … {way}`" in r.stderr
    assert "nothing was changed" in r.stderr
    assert user_tables(dsn) == []  # not even version 1: the whole plan is checked first


def test_each_step_starts_from_the_sessions_defaults(tmp_path: Path, dsn: str) -> None:
    """A migration's session-level settings (a pg_dump file's empty search_path, SET ROLE,
    read-only transactions) must not change how the next step runs, nor who writes the
    bookkeeping: each step starts from a reset session."""
    execute(dsn, "CREATE ROLE vz_owner_role NOLOGIN")
    tree = write_tree(
        tmp_path,
        {
            "up/001_dump_up.sql": (
                "SELECT pg_catalog.set_config('search_path', '', false);\n"
                "CREATE TABLE public.a (id int);\n"
            ),
            "up/002_plain_up.sql": "CREATE TABLE b (id int);\n",  # unqualified: needs public
            "up/003_owner_up.sql": (
                "GRANT CREATE ON SCHEMA public TO vz_owner_role;\n"
                "SET ROLE vz_owner_role;\nCREATE TABLE owned (id int);\n"
            ),
            "up/004_ro_up.sql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;\n",
            "up/005_after_up.sql": "CREATE TABLE c (id int);\n",
            "up/006_notx_up.sql": (
                "-- vezamig:no-transaction\n"
                "SELECT pg_catalog.set_config('search_path', '', false);\n"
            ),
            "up/007_last_up.sql": "CREATE TABLE d (id int);\n",
        },
    )
    try:
        r = vz(dsn, tree, "up")
        assert r.returncode == 0, r
        assert applied_versions(dsn) == [1, 2, 3, 4, 5, 6, 7]
        assert query(dsn, "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'") == [
            ("vz_owner_role",)
        ]
        owners = query(dsn, "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN"
                       " ('b', 'c', 'schema_migrations')")  # fmt: skip
        assert len(owners) == 1 and owners != [("vz_owner_role",)]
    finally:
        execute(
            dsn,
            "DROP TABLE IF EXISTS owned;"
            " REVOKE CREATE ON SCHEMA public FROM vz_owner_role; DROP ROLE vz_owner_role",
        )


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1;\n", 1),
        ("SELECT 1;\n/* never closed\nSELECT 2;\n", 2),
        ("SELECT 1;\nSELECT 'x\n", 2),
    ],
)
def test_a_file_that_ends_inside_a_quote_or_comment_is_named_not_vezamigs_own_sql(
    tmp_path: Path, dsn: str, body: str, line: int
) -> None:
    tree = write_tree(tmp_path, {"up/001_u_up.sql": body})
    r = vz(dsn, tree, "up")
    assert r.returncode == 1, r
    assert f"{tree / 'up' / '001_u_up.sql'}:{line}:" in r.stderr
    assert "the file ends inside a string, a dollar quote or a comment" in r.stderr
    assert "schema_migrations" not in r.stderr and "COMMIT" not in r.stderr
    assert applied_versions(dsn) == []


def test_a_role_switched_by_a_step_never_writes_the_bookkeeping_nor_the_next_step(
    tmp_path: Path, dsn: str
) -> None:
    """SET ROLE in a non-transactional step and SET SESSION AUTHORIZATION in a
    transactional one: recorded by the user who connected; later steps run as that user;
    the non-transactional step's own statements keep the role it set."""
    execute(dsn, "CREATE ROLE vz_other NOLOGIN; GRANT CREATE ON SCHEMA public TO vz_other")
    tree = write_tree(
        tmp_path,
        {
            "up/001_notx_up.sql": (
                "-- vezamig:no-transaction\nSET ROLE vz_other;\n"
                "CREATE TABLE by_role AS SELECT current_user AS cu;\n"
            ),
            "up/002_after_up.sql": "CREATE TABLE after1 AS SELECT current_user AS cu;\n",
            "up/003_auth_up.sql": (
                "SET SESSION AUTHORIZATION vz_other;\n"
                "CREATE TABLE by_auth AS SELECT session_user::text AS su;\n"
            ),
            "up/004_after_up.sql": "CREATE TABLE after2 AS SELECT session_user::text AS su;\n",
        },
    )
    me = query(dsn, "SELECT current_user")[0][0]
    try:
        r = vz(dsn, tree, "up")
        assert r.returncode == 0, r
        assert applied_versions(dsn) == [1, 2, 3, 4]
        assert query(dsn, "SELECT cu FROM by_role") == [("vz_other",)]
        assert query(dsn, "SELECT cu FROM after1") == [(me,)]
        assert query(dsn, "SELECT su FROM by_auth") == [("vz_other",)]
        assert query(dsn, "SELECT su FROM after2") == [(me,)]
        assert {h["db_user"] for h in history(dsn)} == {me}
        assert history(dsn)[0]["message"] == "2 of 2 statements ran"
    finally:
        execute(
            dsn,
            "DROP TABLE IF EXISTS by_role, by_auth; REVOKE CREATE ON SCHEMA public FROM vz_other;"
            " DROP ROLE vz_other",
        )
