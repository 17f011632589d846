"""Migration files (SPEC §1): names, versions, pairing, layout errors, checksums."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, write_tree
from hypothesis import given
from hypothesis import strategies as st

from vezamig.errors import EXIT_USAGE, LayoutError
from vezamig.files import _mentions_directives, checksum_of, collect, discover


def load(base: Path) -> dict[int, tuple[str, bool]]:
    """version → (name, reversible)."""
    return {m.version: (m.name, m.reversible) for m in discover(base / "up", base / "down")}


def layout_problems(base: Path, up: str = "up", down: str = "down") -> list[str]:
    with pytest.raises(LayoutError) as info:
        discover(base / up, base / down, check_directives=True)
    assert info.value.exit_code == EXIT_USAGE
    return info.value.details


def test_up_files_are_named_with_or_without_the_up_suffix(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/001_create_users_up.sql": "CREATE TABLE users (id int);",
            "up/002_add_email.sql": "ALTER TABLE users ADD email text;",
            "down/001_create_users_down.sql": "DROP TABLE users;",
            "down/002_add_email_down.sql": "ALTER TABLE users DROP email;",
        },
    )
    assert load(tmp_path) == {1: ("create_users", True), 2: ("add_email", True)}


def test_names_may_hold_letters_digits_underscores_dots_and_dashes(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/7_v1.2-hot_fix_up.sql": "SELECT 1;"})
    assert load(tmp_path) == {7: ("v1.2-hot_fix", False)}


def test_a_name_ending_in_up_without_the_separator_is_kept_whole(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/003_setup.sql": "SELECT 1;", "up/004_backup_up.sql": "SELECT 1;"})
    assert load(tmp_path) == {3: ("setup", False), 4: ("backup", False)}


def test_versions_compare_as_integers_so_leading_zeros_do_not_matter(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/076_create_gear_items_up.sql": "SELECT 1;",
            "up/9_early_up.sql": "SELECT 1;",
            "up/0100_later_up.sql": "SELECT 1;",
        },
    )
    migrations = discover(tmp_path / "up", tmp_path / "down")
    assert [m.version for m in migrations] == [9, 76, 100]
    assert migrations[1].name == "create_gear_items"


def test_a_version_without_a_down_file_is_irreversible(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "SELECT 1;",
            "up/002_b_up.sql": "SELECT 1;",
            "down/001_a_down.sql": "SELECT 1;",
        },
    )
    assert load(tmp_path) == {1: ("a", True), 2: ("b", False)}


def test_a_missing_down_folder_makes_every_version_irreversible(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "001_a_up.sql").write_text("SELECT 1;")
    assert load(tmp_path) == {1: ("a", False)}


def test_files_not_ending_in_sql_are_ignored(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "SELECT 1;",
            "up/README.md": "# notes",
            "up/002_b_up.sql.bak": "garbage",
            "up/.003_c_up.sql.swp": "garbage",
            "up/notes.txt": "x",
            "down/001_a_down.sql": "SELECT 1;",
            "down/Thumbs.db": "x",
        },
    )
    (tmp_path / "up" / "subfolder").mkdir()
    assert load(tmp_path) == {1: ("a", True)}


def test_a_missing_up_folder_is_a_layout_error_that_says_how_to_point_at_one(
    tmp_path: Path,
) -> None:
    with pytest.raises(LayoutError) as info:
        discover(tmp_path / "nope" / "up", tmp_path / "nope" / "down")
    assert "does not exist" in str(info.value)
    assert "--dir" in str(info.value)


def test_version_zero_is_reserved_and_an_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/000_init_up.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "000_init_up.sql" in problem
    assert "version 0" in problem


@pytest.mark.parametrize(
    "name",
    [
        "create_users.sql",  # no version
        "001-create-users.sql",  # no underscore after the version
        "001_.sql",  # empty name
        "001_create users.sql",  # a space
        "v001_create_users.sql",  # a letter before the version
        "001_créer_up.sql",  # a non-ASCII letter
    ],
)
def test_a_sql_file_whose_name_does_not_match_is_a_layout_error(tmp_path: Path, name: str) -> None:
    write_tree(tmp_path, {f"up/{name}": "SELECT 1;", "up/002_fine_up.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert name in problem
    assert "does not match" in problem


def test_a_down_folder_file_without_the_down_suffix_is_a_layout_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "down/001_a.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "001_a.sql" in problem
    assert "_down" in problem


def test_two_up_files_with_the_same_version_are_a_layout_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/1_b_up.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "version 1" in problem
    assert "001_a_up.sql" in problem and "1_b_up.sql" in problem


def test_two_down_files_with_the_same_version_are_a_layout_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "SELECT 1;",
            "down/001_a_down.sql": "SELECT 1;",
            "down/01_a_down.sql": "SELECT 1;",
        },
    )
    [problem] = layout_problems(tmp_path)
    assert "version 1" in problem


def test_a_down_file_without_an_up_file_is_a_layout_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "down/002_b_down.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "002_b_down.sql" in problem
    assert "no up file" in problem


def test_up_and_down_names_that_differ_for_a_version_are_a_layout_error(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/001_create_users_up.sql": "SELECT 1;",
            "down/001_create_user_down.sql": "SELECT 1;",
        },
    )
    [problem] = layout_problems(tmp_path)
    assert "create_user" in problem and "create_users" in problem


def test_a_version_too_large_for_bigint_is_a_layout_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/99999999999999999999_huge_up.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "99999999999999999999_huge_up.sql" in problem


def test_a_timestamp_version_is_fine(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/20260423175428_tracks_up.sql": "SELECT 1;"})
    assert load(tmp_path) == {20260423175428: ("tracks", False)}


def test_every_layout_problem_is_listed_at_once_not_only_the_first(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "up/000_zero_up.sql": "SELECT 1;",
            "up/bad name.sql": "SELECT 1;",
            "up/001_a_up.sql": "SELECT 1;",
            "up/001_b_up.sql": "SELECT 1;",
            "up/003_c_up.sql": "SELECT 1;",
            "down/002_orphan_down.sql": "SELECT 1;",
            "down/003_see_down.sql": "SELECT 1;",
            "up/004_d_up.sql": "-- vezamig:gaurd SELECT true\nSELECT 1;",
        },
    )
    problems = layout_problems(tmp_path)
    joined = "\n".join(problems)
    assert len(problems) == 6, joined
    for needle in (
        "000_zero_up.sql",
        "bad name.sql",
        "001_b_up.sql",
        "002_orphan_down.sql",
        "003_see_down.sql",
        "vezamig:gaurd",
    ):
        assert needle in joined


def test_collect_reports_problems_without_raising(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/oops.sql": ""})
    migrations, problems = collect(tmp_path / "up", tmp_path / "down")
    assert [m.version for m in migrations] == [1]
    assert len(problems) == 1 and "oops.sql" in problems[0]


def test_the_migrations_plus_rollback_layout_works_unchanged(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "migrations/001_create_users.sql": "CREATE TABLE users (id int);",
            "migrations/002_add_email.sql": "ALTER TABLE users ADD email text;",
            "migrations/003_seed.sql": "INSERT INTO users VALUES (1);",
            "migrations/rollback/001_create_users_down.sql": "DROP TABLE users;",
            "migrations/rollback/002_add_email_down.sql": "ALTER TABLE users DROP email;",
        },
    )
    migrations = discover(tmp_path / "migrations", tmp_path / "migrations" / "rollback")
    assert [(m.version, m.name, m.reversible) for m in migrations] == [
        (1, "create_users", True),
        (2, "add_email", True),
        (3, "seed", False),
    ]


def test_up_and_down_files_may_share_one_folder(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "all/001_a.sql": "SELECT 1;",
            "all/001_a_down.sql": "SELECT 2;",
            "all/002_b_up.sql": "SELECT 3;",
        },
    )
    migrations = discover(tmp_path / "all", tmp_path / "all")
    assert [(m.version, m.name, m.reversible) for m in migrations] == [
        (1, "a", True),
        (2, "b", False),
    ]


def test_a_down_file_in_the_up_folder_is_a_layout_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;", "up/001_a_down.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert "001_a_down.sql" in problem


def test_the_checksum_is_the_sha256_of_the_up_file(tmp_path: Path) -> None:
    content = b"CREATE TABLE users (id int);\n"
    write_tree(tmp_path, {"up/001_a_up.sql": content, "down/001_a_down.sql": b"DROP TABLE x;\n"})
    [m] = discover(tmp_path / "up", tmp_path / "down")
    assert m.checksum == hashlib.sha256(content).hexdigest()
    assert len(m.checksum) == 64


def test_crlf_and_lf_files_have_the_same_checksum(tmp_path: Path) -> None:
    lf = b"-- a comment\nCREATE TABLE users (id int);\nSELECT 1;\n"
    crlf = lf.replace(b"\n", b"\r\n")
    write_tree(tmp_path / "lf", {"up/001_a_up.sql": lf})
    write_tree(tmp_path / "crlf", {"up/001_a_up.sql": crlf})
    [a] = discover(tmp_path / "lf" / "up", tmp_path / "lf" / "down")
    [b] = discover(tmp_path / "crlf" / "up", tmp_path / "crlf" / "down")
    assert a.checksum == b.checksum == hashlib.sha256(lf).hexdigest()
    assert checksum_of(crlf) == checksum_of(lf)
    assert b.up.text == lf.decode()


def test_a_lone_carriage_return_is_content_and_changes_the_checksum() -> None:
    assert checksum_of(b"SELECT 1;\r") != checksum_of(b"SELECT 1;\n")


def test_any_edit_changes_the_checksum() -> None:
    assert checksum_of(b"SELECT 1;\n") != checksum_of(b"SELECT 1; \n")


def test_a_file_that_is_not_utf8_is_a_layout_error_with_its_line(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": b"SELECT 1;\nSELECT '\xff';\n"})
    [problem] = layout_problems(tmp_path)
    assert "001_a_up.sql:2" in problem
    assert "UTF-8" in problem


@pytest.mark.parametrize(
    "content",
    [b"DROP TABLE x;\n", b"\xef\xbb\xbfDROP TABLE x;\r\n", b"SELECT 1;\r-- lone CR\r\n"],
    ids=["plain", "bom and crlf", "lone cr"],
)
def test_a_checksum_computed_later_from_the_text_equals_the_one_of_the_bytes(
    tmp_path: Path, content: bytes
) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": content, "down/001_a_down.sql": content})
    [m] = discover(tmp_path / "up", tmp_path / "down", check_directives=True)
    assert m.down is not None
    assert m.down.checksum == m.up.checksum == checksum_of(content)


def test_down_files_are_read_only_when_their_text_is_needed(tmp_path: Path) -> None:
    # status, baseline and repair only need to know that a down file exists.
    write_tree(
        tmp_path,
        {"up/001_a_up.sql": "SELECT 1;", "down/001_a_down.sql": b"SELECT '\xff';\n"},
    )
    [m] = discover(tmp_path / "up", tmp_path / "down")
    assert m.reversible
    with pytest.raises(LayoutError) as info:
        _ = m.down
    assert "001_a_down.sql:1: not valid UTF-8" in info.value.message
    [problem] = layout_problems(tmp_path)  # up, down and roundtrip read every down file
    assert "001_a_down.sql:1: not valid UTF-8" in problem


def test_paths_in_messages_read_as_the_folder_was_given(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/1_a_up.sql": "SELECT 1;", "up/01_b_up.sql": "SELECT 1;"})
    [problem] = layout_problems(tmp_path)
    assert problem.startswith(f"{tmp_path}/up/1_a_up.sql: version 1 is also used by 01_b_up.sql")
    [m] = collect(tmp_path / "up", tmp_path / "down")[0]
    assert m.up.path == tmp_path / "up" / "01_b_up.sql"


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("1_a_up.sql", "a"),
        ("1_a.sql", "a"),
        ("1_up.sql", "up"),
        ("1__up.sql", "_up"),
        ("1_a_up_up.sql", "a_up"),
        ("1_setup.sql", "setup"),
        ("1_v2.0-rc_up.sql", "v2.0-rc"),
    ],
)
def test_only_a_separate_up_suffix_is_dropped_from_the_name(
    tmp_path: Path, filename: str, name: str
) -> None:
    write_tree(tmp_path, {f"up/{filename}": "SELECT 1;"})
    assert load(tmp_path) == {1: (name, False)}


def test_a_sql_entry_that_is_not_a_regular_file_is_a_layout_error(tmp_path: Path) -> None:
    base = write_tree(tmp_path, {"up/001_a_up.sql": "SELECT 1;\n"})
    (base / "up" / "002_b_up.sql").symlink_to(tmp_path / "nowhere.sql")
    (base / "up" / "003_c_up.sql").mkdir()
    (base / "down" / "001_a_down.sql").mkdir()
    (base / "up" / "notes").mkdir()  # not .sql: ignored, as any other file
    (base / "up" / "004_d_up.sql").symlink_to("004_d_up.sql")  # a loop (ELOOP)
    assert layout_problems(base) == [
        f"{base}/up/002_b_up.sql: not a regular file (a folder, or a link to nothing); "
        "remove or rename it",
        f"{base}/up/003_c_up.sql: not a regular file (a folder, or a link to nothing); "
        "remove or rename it",
        f"{base}/up/004_d_up.sql: not a regular file (a folder, or a link to nothing); "
        "remove or rename it",
        f"{base}/down/001_a_down.sql: not a regular file (a folder, or a link to nothing); "
        "remove or rename it",
    ]


def test_a_link_to_a_file_is_read_as_the_file(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "sql", {})
    (tmp_path / "real.sql").write_text("SELECT 1;\n")
    (base / "up" / "001_a_up.sql").symlink_to(tmp_path / "real.sql")
    assert load(base) == {1: ("a", False)}


def test_a_folder_option_naming_a_file_says_so(tmp_path: Path) -> None:
    base = write_tree(tmp_path, {})
    (tmp_path / "file.sql").write_text("SELECT 1;\n")
    for up, down in (("file.sql", "down"), ("up", "file.sql")):
        with pytest.raises(LayoutError, match=r"file\.sql is a file, not a folder"):
            discover(base / up, base / down)
    # `--dir file.sql`: named as the file it is, not as a missing file.sql/up
    for command in (["status", "-d", "host=/nonexistent"], ["verify"]):
        r = run_cli([*command, "--dir", str(tmp_path / "file.sql")])
        assert r.returncode == 2, r
        assert f"migration folder {tmp_path / 'file.sql'} is a file, not a folder" in r.stderr


def test_a_layout_failure_also_reports_the_down_files_not_read_yet(tmp_path: Path) -> None:
    """Down files are read lazily; when the run fails anyway, every problem is listed."""
    base = write_tree(
        tmp_path,
        {
            "up/001_a_up.sql": "-- vezamig:gaurd SELECT true\nSELECT 1;\n",
            "up/003_c_up.sql": "SELECT 1;\n",
            "down/003_c_down.sql": "-- vezamig:bogus\nSELECT 1;\n",
        },
    )
    with pytest.raises(LayoutError) as info:
        discover(base / "up", base / "down", check_directives=True, read_down=False)
    assert [d.split(": ", 1)[0] for d in info.value.details] == [
        f"{base}/up/001_a_up.sql:1",
        f"{base}/down/003_c_down.sql:1",
    ]


@given(st.text(alphabet="vezamigVEZAMIGİı z-:\n", max_size=40))
def test_the_fast_directive_scan_finds_exactly_what_a_case_insensitive_search_finds(
    text: str,
) -> None:
    """The scan behind `mentions_vezamig` looks for the rare `z` first (issue 7); it
    must answer as a plain case-insensitive search, the look-alike check's own
    (`VEZAMIg:guard` is reported, so it must be found)."""
    expected = re.search("vezamig", text, re.I) is not None
    assert _mentions_directives(text) == expected
    assert _mentions_directives("CREATE TABLE t (at timestamptz);\n" + text) == expected


def test_a_directive_in_mixed_case_is_reported_not_ignored(tmp_path: Path) -> None:
    write_tree(tmp_path, {"up/001_a_up.sql": "-- VEZAMIg:guard SELECT false\nSELECT 1;\n"})
    [problem] = layout_problems(tmp_path)
    assert "001_a_up.sql:1: `VEZAMIg:guard SELECT false` looks like a directive" in problem


def test_a_listing_without_texts_keeps_checksums_and_directives_only(tmp_path: Path) -> None:
    """`status` loads with texts=False (issue 7): same checksums and directive problems,
    no text kept for files without directives, and asking for one is a loud bug."""
    files = {
        "up/001_plain_up.sql": "CREATE TABLE a ();\n",
        "up/002_crlf_up.sql": "\ufeffCREATE TABLE b ();\r\n",
        "up/003_guarded_up.sql": "-- vezamig:guard SELECT true\nCREATE TABLE c ();\n",
        "down/001_plain_down.sql": "DROP TABLE a;\n",
    }
    write_tree(tmp_path, files)
    full = discover(tmp_path / "up", tmp_path / "down", check_directives=True, read_down=False)
    lean = discover(
        tmp_path / "up", tmp_path / "down", check_directives=True, read_down=False, texts=False
    )
    assert [(m.version, m.checksum, m.reversible) for m in lean] == [
        (m.version, m.checksum, m.reversible) for m in full
    ]
    assert lean[2].up.text == full[2].up.text  # a file with directives keeps its text
    assert [g.query for g in lean[2].up.directives.guards] == ["SELECT true"]
    for m in lean[:2]:
        with pytest.raises(RuntimeError, match="loaded without its text"):
            m.up.text  # noqa: B018
    bad = tmp_path / "bad"
    write_tree(bad, {"up/001_a_up.sql": "-- vezamig:gaurd SELECT 1\nSELECT 1;\n"})
    with pytest.raises(LayoutError) as info:
        discover(bad / "up", bad / "down", check_directives=True, read_down=False, texts=False)
    assert "unknown directive `vezamig:gaurd`" in "\n".join(info.value.details)


def _failing_load(tmp_path: Path, files: dict[str, str], **options: Any) -> list[str]:
    """The problems a load of ``files`` that must fail lists."""
    write_tree(tmp_path, files)
    with pytest.raises(LayoutError) as info:
        discover(tmp_path / "up", tmp_path / "down", check_directives=True, **options)
    return info.value.details


def test_a_failing_load_lists_the_lexer_errors_of_plain_headers_too(tmp_path: Path) -> None:
    """Bodies are lexed by the runs that execute them; a load that fails anyway lexes
    them all, so one run lists every problem, each once."""
    files = {
        "up/001_a_up.sql": "-- vezamig:no-transaction\nSELECT 'open;\n",
        "up/002_b_up.sql": "-- vezamig:gaurd SELECT true\nSELECT 1;\n",
    }
    details = _failing_load(tmp_path, files, lex_bodies=False)
    assert len(details) == 2, details
    assert any("001_a_up.sql:2:8: unterminated quoted string" in d for d in details)
    assert any("002_b_up.sql:1: unknown directive" in d for d in details)


def test_a_failing_load_checks_the_down_files_that_pair_with_no_up_file_too(
    tmp_path: Path,
) -> None:
    """Not only `verify`: every command lists their directive problems in the same run."""
    files = {
        "up/001_a_up.sql": "CREATE TABLE a ();\n",
        "up/002_b_up.sql": "CREATE TABLE b ();\n",
        "down/002_other_down.sql": "-- vezamig:gaurd SELECT true\nDROP TABLE b;\n",
        "down/004_zz_down.sql": "-- vezamig:nope\nSELECT 1;\n",
    }
    for read_down in (False, True):
        details = _failing_load(tmp_path, files, read_down=read_down)
        assert len(details) == 4, details
        assert any("004_zz_down.sql: down file for version 4 has no up file" in d for d in details)
        assert any("004_zz_down.sql:1: unknown directive `vezamig:nope`" in d for d in details)
        assert any("002_other_down.sql: name `other` differs" in d for d in details)
        assert any("002_other_down.sql:1: unknown directive `vezamig:gaurd`" in d for d in details)
