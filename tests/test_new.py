"""`vezamig new NAME [--irreversible]` (SPEC §5): the next version, the folder's padding,
a header that teaches the directives, and no name that §1 would reject."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CliResult, run_cli, write_tree

from vezamig.errors import EXIT_OK, EXIT_USAGE
from vezamig.files import discover
from vezamig.scaffold import create

NO_DATABASE = {"PGHOST": "/nonexistent", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}


def new(base: Path, *args: str) -> CliResult:
    return run_cli(["new", *args, "--dir", str(base)], env=NO_DATABASE)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_new_in_an_empty_folder_creates_version_1_up_and_down(tmp_path: Path) -> None:
    base = tmp_path / "sql"
    result = new(base, "create_users")
    assert result.returncode == EXIT_OK, result
    assert names(base / "up") == ["001_create_users_up.sql"]
    assert names(base / "down") == ["001_create_users_down.sql"]
    assert f"created {base}/up/001_create_users_up.sql" in result.stdout
    assert f"created {base}/down/001_create_users_down.sql" in result.stdout


def test_the_next_version_is_the_highest_plus_one_with_the_same_zero_padding(
    tmp_path: Path,
) -> None:
    base = write_tree(
        tmp_path / "sql",
        {
            "up/001_a_up.sql": "SELECT 1;\n",
            "up/076_b_up.sql": "SELECT 1;\n",
            "down/076_b_down.sql": "SELECT 1;\n",
        },
    )
    assert new(base, "c").returncode == EXIT_OK
    assert "077_c_up.sql" in names(base / "up")
    assert "077_c_down.sql" in names(base / "down")

    wide = write_tree(tmp_path / "wide", {"up/00985_x_up.sql": "SELECT 1;\n"})
    assert new(wide, "y").returncode == EXIT_OK
    assert "00986_y_up.sql" in names(wide / "up")


def test_a_version_past_the_padding_simply_grows_a_digit(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/999_a_up.sql": "SELECT 1;\n"})
    assert new(base, "b").returncode == EXIT_OK
    assert "1000_b_up.sql" in names(base / "up")


def test_a_down_without_an_up_still_counts_so_no_version_is_reused(tmp_path: Path) -> None:
    base = write_tree(
        tmp_path / "sql", {"up/001_a_up.sql": "SELECT 1;\n", "down/004_d_down.sql": "SELECT 1;\n"}
    )
    created = create(base / "up", base / "down", "e")
    assert created.version == 5
    assert created.up.name == "005_e_up.sql"


def test_irreversible_creates_only_the_up_file(tmp_path: Path) -> None:
    base = tmp_path / "sql"
    result = new(base, "seed_genres", "--irreversible")
    assert result.returncode == EXIT_OK, result
    assert names(base / "up") == ["001_seed_genres_up.sql"]
    assert names(base / "down") == []
    assert "version 1 is irreversible (no down file)" in result.stdout
    [m] = discover(base / "up", base / "down")
    assert not m.reversible


def test_a_tree_of_bare_up_names_gets_a_bare_up_name(tmp_path: Path) -> None:
    write_tree(tmp_path, {"migrations/007_users.sql": "SELECT 1;\n"})
    up, down = tmp_path / "migrations", tmp_path / "migrations/rollback"
    created = create(up, down, "add_email")
    assert created.up == up / "008_add_email.sql"
    assert created.down == down / "008_add_email_down.sql"
    assert [m.version for m in discover(up, down)] == [7, 8]


def test_the_new_files_teach_the_directives_without_activating_any(tmp_path: Path) -> None:
    base = tmp_path / "sql"
    assert new(base, "add_tracks_bpm").returncode == EXIT_OK
    up = (base / "up/001_add_tracks_bpm_up.sql").read_text()
    down = (base / "down/001_add_tracks_bpm_down.sql").read_text()
    assert up.startswith("-- 1 add_tracks_bpm:")
    for directive in ("vezamig:guard SELECT", "vezamig:lock", "vezamig:no-transaction"):
        assert directive in up
    assert "vezamig:guard" in down and "vezamig:lock" in down
    [m] = discover(base / "up", base / "down", check_directives=True)
    assert m.up.directives == m.down.directives  # both empty: examples, not directives
    assert not m.up.directives.guards and not m.up.directives.no_transaction
    assert m.down is not None and not m.down.directives.guards

    verified = run_cli(["verify", "--dir", str(base)], env=NO_DATABASE)
    assert verified.returncode == EXIT_OK, verified
    assert "verified 2 file(s): no problems" in verified.stdout


@pytest.mark.parametrize(
    "name",
    [
        "add email",
        "add/email",
        "../escape",
        "größe",
        "add_email_up",
        "add_email_down",
        "",
        "add_y\n",
    ],
)
def test_a_name_that_would_not_match_the_file_rules_is_refused(tmp_path: Path, name: str) -> None:
    base = tmp_path / "sql"
    result = new(base, name)
    assert result.returncode == EXIT_USAGE, result
    assert "is not valid" in result.stderr
    assert names(base / "up") == [] and names(base / "down") == []


def test_names_may_use_letters_digits_dots_dashes_and_underscores(tmp_path: Path) -> None:
    base = tmp_path / "sql"
    result = new(base, "Add-v2.1_bpm")
    assert result.returncode == EXIT_OK, result
    [m] = discover(base / "up", base / "down")
    assert (m.version, m.name) == (1, "Add-v2.1_bpm")


def test_new_creates_a_missing_folder_and_says_so(tmp_path: Path) -> None:
    base = tmp_path / "fresh"
    result = new(base, "first")
    assert result.returncode == EXIT_OK, result
    assert f"created folder {base / 'up'} (it did not exist)" in result.stdout
    assert f"created folder {base / 'down'} (it did not exist)" in result.stdout
    assert names(base / "up") == ["001_first_up.sql"]


def test_new_refuses_a_folder_that_is_a_file_without_a_traceback(tmp_path: Path) -> None:
    base = tmp_path / "sql"
    base.mkdir()
    (base / "up").write_text("not a folder\n")
    result = new(base, "x")
    assert result.returncode == EXIT_USAGE, result
    assert f"migration folder {base / 'up'} is a file, not a folder" in result.stderr
    assert "Traceback" not in result.output
    assert names(base / "down") == []


def test_new_does_not_count_a_folder_named_like_a_migration(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/001_a_up.sql": "SELECT 1;\n"})
    (base / "up" / "005_dir_up.sql").mkdir()
    result = new(base, "b")
    assert result.returncode == EXIT_OK, result
    assert "002_b_up.sql" in names(base / "up")


def test_new_reports_a_file_it_cannot_write_without_a_traceback(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {})
    result = new(base, "x" * 300)  # longer than any file name may be, also for root
    assert result.returncode == EXIT_USAGE, result
    assert "cannot write" in result.stderr and "File name too long" in result.stderr
    assert "Traceback" not in result.output
    assert names(base / "up") == names(base / "down") == []


def test_new_refuses_a_version_the_tracking_table_could_not_hold(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {"up/9223372036854775807_max_up.sql": "SELECT 1;\n"})
    result = new(base, "foo")
    assert result.returncode == EXIT_USAGE, result
    assert "above what the tracking table's bigint holds" in result.stderr
    assert names(base / "up") == ["9223372036854775807_max_up.sql"]
