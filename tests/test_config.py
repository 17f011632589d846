"""Durations, table names and the run configuration (SPEC §4, §5)."""

from __future__ import annotations

import os
import subprocess

import pytest

from vezamig.config import Config, os_text, parse_duration, parse_table, shell_quote
from vezamig.errors import EXIT_USAGE, UsageError


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("2min", 120_000),
        ("1h", 3_600_000),
        ("0", 0),
        ("0s", 0),
        ("250", 250),  # a bare number is milliseconds, as in PostgreSQL
        ("1.5s", 1500),
        (" 3 s ", 3000),
    ],
)
def test_durations_read_as_milliseconds(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "fast", "10 seconds", "-1s", "1d", "5m", "1e3ms", "s"])
def test_an_unreadable_duration_is_a_usage_error_that_shows_examples(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_duration(text, "--lock-timeout")
    assert info.value.exit_code == EXIT_USAGE
    assert "--lock-timeout" in str(info.value)
    assert "500ms" in str(info.value)


@pytest.mark.parametrize(
    "text", ["2147483648ms", "600h", "99999999h", "9" * 309, "1" + "0" * 303 + "h"]
)
def test_a_duration_longer_than_postgresql_allows_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match=r"longer than PostgreSQL's timeouts allow") as info:
        parse_duration(text)
    assert info.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize("text", ["0.4ms", "0.5ms", "0.9ms", "0.0001s", "0.00001min", "0.49"])
def test_a_duration_below_a_millisecond_is_refused_not_turned_into_none(text: str) -> None:
    # Rounded, it would be 0: no timeout at all, the opposite of what was asked.
    with pytest.raises(UsageError, match=r"below 1ms: .* use at least 1ms, or 0 for that"):
        parse_duration(text, "--lock-timeout")
    assert parse_duration("1.4ms") == 1 and parse_duration("0.0ms") == 0


def test_the_longest_duration_postgresql_allows_is_accepted() -> None:
    assert parse_duration("2147483647") == 2**31 - 1


@pytest.mark.parametrize("text", ["pg_temp.sm", "pg_catalog.sm", "pg_toast.sm", "pg_foo.sm"])
def test_a_table_in_a_schema_postgresql_reserves_is_a_usage_error(text: str) -> None:
    # pg_temp and pg_foo reached the server: "unacceptable schema name", exit 1.
    with pytest.raises(UsageError, match=r"names starting with pg_ are PostgreSQL's own"):
        parse_table(text)


def test_a_table_named_pg_something_outside_such_a_schema_is_fine() -> None:
    assert parse_table("pg_migrations") == ("pg_migrations",)
    assert parse_table("PG_x.t") == ("PG_x", "t")  # not reserved: the check is exact


def test_a_table_name_may_be_schema_qualified() -> None:
    assert parse_table("schema_migrations") == ("schema_migrations",)
    assert parse_table("ops.migrations") == ("ops", "migrations")


def test_a_table_name_keeps_its_case_and_odd_characters_as_one_identifier() -> None:
    assert parse_table('My Table"; DROP') == ('My Table"; DROP',)


@pytest.mark.parametrize("text", ["a.b.c", ".t", "s.", "", "x" * 56, "s\x00.t"])
def test_a_bad_table_name_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_table(text)
    assert "--table" in str(info.value)


@pytest.mark.parametrize("text", ["schema_migrations ", " schema_migrations", "ops .t", "ops. t"])
def test_a_table_name_with_a_blank_at_either_end_is_refused(text: str) -> None:
    # Taken literally it is another, empty pair of tables: every version applied again.
    with pytest.raises(UsageError, match=r"starts or ends a name with a blank; remove it"):
        parse_table(text)
    assert parse_table("my migrations") == ("my migrations",)  # inside a name: literal


def test_the_longest_table_name_still_leaves_room_for_its_history_companion() -> None:
    name = "x" * 55
    assert Config(table=parse_table(name)).history_table == (name + "_history",)
    assert len((name + "_history").encode()) == 63


def test_defaults_follow_the_spec() -> None:
    cfg = Config()
    assert cfg.table == ("schema_migrations",)
    assert cfg.history_table == ("schema_migrations_history",)
    assert str(cfg.up_dir) == "sql/up" and str(cfg.down_dir) == "sql/down"
    assert cfg.lock_timeout_ms == 5000
    assert cfg.lock_retries == 3
    assert cfg.statement_timeout_ms == 0
    assert cfg.lock_wait_ms == 60_000


def test_the_history_table_lives_in_the_same_schema() -> None:
    cfg = Config(table=("ops", "migrations"))
    assert cfg.history_table == ("ops", "migrations_history")
    assert cfg.table_label == "ops.migrations"


@pytest.mark.parametrize(
    "path",
    ["sql", "it's here", "ü/sql", b"lat\xe9/sql".decode("utf-8", "surrogateescape")],
    ids=["plain", "quote", "utf8", "not-utf8"],
)
def test_a_suggested_path_pastes_into_a_shell_as_the_same_bytes(path: str) -> None:
    word = shell_quote(path)
    assert word == os_text(word)  # printable as it is
    printed = subprocess.run(["bash", "-c", f"printf %s {word}"], capture_output=True, check=True)
    assert printed.stdout == os.fsencode(path)


def test_text_from_the_os_shows_a_byte_that_is_not_utf8_as_its_escape() -> None:
    assert os_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert os_text("café") == "café"
