"""What a person reads (output.py): text from files and the database shown as it is,
never as terminal control; lines that fit; `--quiet`. Through the real CLI, on a
pipe and on a pseudo-terminal, against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import execute, migrate, run_cli, run_cli_on_terminal, write_tree

from vezamig.output import visible
from vezamig.sqltext import excerpt

CLEAR_SCREEN = "\x1b[2J\x1b[H"


def test_control_characters_are_shown_as_escapes_tabs_and_line_breaks_stay() -> None:
    assert visible("plain\ttext\n") == "plain\ttext\n"
    assert visible("a\x1b[2Jb\rc\x08d\x07\x7f\x9b") == "a\\x1b[2Jb\\x0dc\\x08d\\x07\\x7f\\x9b"
    assert visible("admin\u202e) --") == "admin\\u202e) --"  # a bidi override, shown


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_an_escape_sequence_in_a_server_error_never_reaches_the_output_raw(
    tmp_path: Path, dsn: str, terminal: bool
) -> None:
    """A row value quoted in an error (`invalid input syntax … "4␛[2J…"`) must not
    clear the operator's screen and hide the error above it."""
    tree = write_tree(
        tmp_path,
        {"up/001_age_up.sql": "ALTER TABLE users ALTER COLUMN age TYPE int USING age::int;\n"},
    )
    execute(dsn, f"CREATE TABLE users (age text); INSERT INTO users VALUES (E'4{CLEAR_SCREEN}2')")
    args = ["up", "-d", dsn, "--dir", str(tree)]
    r = run_cli_on_terminal(args, "", env={"COLUMNS": "200"}) if terminal else run_cli(args)
    assert r.returncode == 1, r
    assert '22P02 invalid input syntax for type integer: "4\\x1b[2J\\x1b[H2"' in r.output
    assert "\x1b[2J" not in r.output and "\x1b[H" not in r.output


def test_control_characters_in_files_and_stored_names_are_shown_in_every_view(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "SELECT 1;\n",
            "up/002_b_up.sql": "SELECT 1;\n",
            "up/003_g_up.sql": (
                "-- vezamig:guard SELECT 'A\x1b[31mRED B\x08\x08X' IS NULL\nSELECT 1;\n"
            ),
        },
    )
    migrate(dsn, tree, to=2)
    (tree / "up/002_b_up.sql").unlink()
    execute(dsn, "UPDATE schema_migrations SET name = E'bee\\x1b[41mBG\\rCR' WHERE version = 2")
    execute(dsn, "UPDATE schema_migrations_history SET message = E'm\\x1b[2J' WHERE version = 2")
    outputs = []
    for columns in ("60", "200"):
        env = {"COLUMNS": columns}
        for args in (["status"], ["history"], ["up", "--dry-run"], ["up"]):
            outputs.append(run_cli_on_terminal([*args, "-d", dsn, "--dir", str(tree)], "", env=env))
    outputs += [run_cli([c, "-d", dsn, "--dir", str(tree)]) for c in ("status", "history", "up")]
    for r in outputs:
        assert "\x1b[31m" not in r.output and "\x1b[41m" not in r.output, r
        assert "\x1b[2J" not in r.output and "\r" not in r.output.replace("\r\n", ""), r
        assert "\x08" not in r.output, r
    shown = "".join(r.output for r in outputs)
    assert "bee\\x1b[41mBG\\x0dCR" in shown  # the stored name, missing file
    assert "m\\x1b[2J" in shown  # the history message
    assert "SELECT 'A\\x1b[31mRED B\\x08\\x08X' IS NULL" in shown  # the guard as it runs


def test_a_failed_statement_on_a_long_line_is_shown_around_its_column_with_a_caret(
    tmp_path: Path, dsn: str
) -> None:
    columns = ", ".join(f"c{i} int" for i in range(60))
    tree = write_tree(
        tmp_path, {"up/001_long_up.sql": f"CREATE TABLE l2 (id int, {columns}, bad txet);\n"}
    )
    r = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 1, r
    column = len(f"CREATE TABLE l2 (id int, {columns}, bad ") + 1
    assert f'001_long_up.sql:1:{column}: 42704 type "txet" does not exist' in r.stderr
    shown = r.stderr.splitlines()
    (row,) = [line for line in shown if line.lstrip().startswith("> 1 | ")]
    caret = shown[shown.index(row) + 1]
    assert row[caret.index("^") :].startswith("txet")


def test_an_excerpt_window_that_reaches_the_end_of_its_line_has_no_trailing_ellipsis() -> None:
    text = "SELECT " + ", ".join(str(i) for i in range(200)) + " FROM FROM t;\n"
    column = text.index("FROM t") + 1
    row, caret = excerpt(text, 1, context=0, column=column)
    assert row.endswith("FROM FROM t;")
    assert row.startswith("> 1 | …")
    assert row[caret.index("^") :].startswith("FROM t;")


def test_the_caret_stands_under_its_token_after_wide_characters() -> None:
    text = "SELECT '日本語日本語' AS a FROM FROM t;\n"
    row, caret = excerpt(text, 1, context=0, column=text.index("FROM t") + 1)
    # Each CJK character takes two terminal cells: the caret counts cells.
    before = row[: row.index("FROM t")]
    cells = sum(2 if "\u3000" <= c <= "\u9fff" else 1 for c in before)
    assert caret.index("^") == cells


def test_a_guard_written_over_several_lines_stays_indented_in_the_plan(
    tmp_path: Path, dsn: str
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_ml_up.sql": (
                "/* vezamig:guard SELECT count(*) = 1\n  FROM pg_class\n"
                " WHERE relname = 'nope' */\nCREATE TABLE q (id int);\n"
            )
        },
    )
    r = run_cli(["up", "--dry-run", "-d", dsn, "--dir", str(tree)])
    assert r.returncode == 3, r
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "guard (line 1)" in line)
    assert lines[start + 1].startswith(" " * 11) and "FROM pg_class" in lines[start + 1]
    assert lines[start + 2].startswith(" " * 11) and "REFUSES now" in lines[start + 2]
    refusal = r.stderr.splitlines()
    at = next(i for i, line in enumerate(refusal) if "would refuse now" in line)
    assert refusal[at + 1].startswith("    ") and "FROM pg_class" in refusal[at + 1]


@pytest.mark.parametrize("command", ["status", "history"])
def test_quiet_status_and_history_print_nothing_the_exit_code_says_it(
    tmp_path: Path, dsn: str, command: str
) -> None:
    tree = write_tree(
        tmp_path, {"up/001_a_up.sql": "SELECT 1;\n", "up/002_b_up.sql": "SELECT 1;\n"}
    )
    migrate(dsn, tree, to=1)
    extra = ["--exit-code"] if command == "status" else []
    for r in (
        run_cli([command, "-q", *extra, "-d", dsn, "--dir", str(tree)]),
        run_cli_on_terminal([command, "-q", *extra, "-d", dsn, "--dir", str(tree)], ""),
    ):
        assert r.returncode == (3 if command == "status" else 0), r
        assert r.output.strip() == "", r
    # --json is asked for explicitly: -q does not take it away.
    r = run_cli([command, "-q", "--json", "-d", dsn, "--dir", str(tree)])
    assert r.stdout.startswith(("{", "["))


def test_the_progress_line_is_cut_to_the_terminal_and_cleared_before_a_message(
    tmp_path: Path, dsn: str
) -> None:
    long_name = "n" * 40 + "_" + "long_name_" * 5 + "x"
    tree = write_tree(
        tmp_path,
        {
            "up/001_ok_up.sql": "SELECT 1;\n",
            f"up/002_{long_name}_up.sql": "CREATE TABLE t (id int) oops;\n",
        },
    )
    r = run_cli_on_terminal(["up", "-d", dsn, "--dir", str(tree)], "", env={"COLUMNS": "40"})
    assert r.returncode == 1, r
    # Every progress line fits in 40 columns, so it never wraps and leaves a row behind.
    progress = [chunk for chunk in r.stdout.split("\r") if "…" in chunk and "\n" not in chunk]
    assert progress and all(len(chunk) <= 39 for chunk in progress), progress
    # The error starts on a clean line: the progress line was blanked first.
    assert "\r" + " " * 39 + "\r" in r.stdout


def test_a_history_table_never_breaks_a_path_or_file_line(tmp_path: Path, dsn: str) -> None:
    deep = tmp_path.joinpath(*(f"deeply_nested_folder_{i}" for i in range(4)))
    tree = write_tree(deep, {"up/001_x_up.sql": "ALTER TABLE nope ADD COLUMN x txet;\n"})
    assert run_cli(["up", "-d", dsn, "--dir", str(tree)]).returncode == 1
    where = f"{tree / 'up' / '001_x_up.sql'}:1:"
    for columns in ("100", "120", str(len(where) + 130)):
        r = run_cli_on_terminal(["history", "-d", dsn], "", env={"COLUMNS": columns})
        assert r.returncode == 0, r
        assert where in r.stdout, (columns, r.stdout)


def test_the_status_table_is_used_only_where_no_name_is_broken(tmp_path: Path, dsn: str) -> None:
    tree = write_tree(
        tmp_path,
        {
            "up/001_slow_backfill_up.sql": "SELECT pg_sleep(0.01);\n",
            "up/003_three_up.sql": "SELECT 1;\n",
        },
    )
    migrate(dsn, tree)
    (tree / "up/002_two_up.sql").write_text("SELECT 2;\n")  # out-of-order: the widest state
    execute(dsn, "UPDATE schema_migrations SET duration_ms = 1234567 WHERE version = 1")
    for columns in range(70, 111, 4):
        r = run_cli_on_terminal(
            ["status", "-d", dsn, "--dir", str(tree)], "", env={"COLUMNS": str(columns)}
        )
        assert r.returncode == 0, r
        for text in ("slow_backfill", "out-of-order"):
            assert text in r.stdout, (columns, text, r.stdout)
