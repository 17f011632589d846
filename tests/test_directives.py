"""Directives in a migration's header comments (SPEC §2), without a database."""

from __future__ import annotations

import pytest

from vezamig.directives import Directives, Guard, ParsedHeader, parse_directives


def parse(text: str) -> ParsedHeader:
    return parse_directives(text, "sql/up/001_a_up.sql")


def ok(text: str) -> Directives:
    header = parse(text)
    assert header.problems == []
    return header.directives


def test_a_file_without_directives_has_none() -> None:
    d = ok("-- just a note\nCREATE TABLE t (id int);\n")
    assert d.guards == () and d.locks == () and d.no_transaction is False


def test_a_line_directive_takes_the_rest_of_the_line_as_its_arguments() -> None:
    d = ok("-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)\nDROP TABLE t;\n")
    assert d.guards == (Guard("SELECT NOT EXISTS (SELECT 1 FROM t)", 1),)


def test_a_block_directive_may_span_several_lines() -> None:
    text = (
        "-- Roll back 985\n"
        "/* vezamig:guard\n"
        "     SELECT NOT EXISTS (\n"
        "       SELECT 1 FROM tracks WHERE storage_backend <> 'local')\n"
        "*/\n"
        "ALTER TABLE tracks DROP COLUMN storage_backend;\n"
    )
    [guard] = ok(text).guards
    assert guard.line == 2
    assert guard.query.startswith("SELECT NOT EXISTS (")
    assert guard.query.endswith("storage_backend <> 'local')")
    assert "\n" in guard.query


def test_guard_is_repeatable_and_keeps_file_order_and_lines() -> None:
    text = (
        "-- vezamig:guard SELECT true\n"
        "-- some prose in between\n"
        "-- vezamig:guard SELECT count(*) = 0 FROM t\n"
        "/* vezamig:guard VALUES (true) */\n"
        "DROP TABLE t;\n"
    )
    assert [(g.query, g.line) for g in ok(text).guards] == [
        ("SELECT true", 1),
        ("SELECT count(*) = 0 FROM t", 3),
        ("VALUES (true)", 4),
    ]


def test_lock_takes_several_tables_schema_qualified_and_quoted_names() -> None:
    d = ok(
        '-- vezamig:lock tracks, audit.events, "Mixed Case", "we""ird"."t.b"\n'
        "-- vezamig:lock users\n"
        "SELECT 1;\n"
    )
    assert d.lock_tables == [
        ("tracks",),
        ("audit", "events"),
        ("Mixed Case",),
        ('we"ird', "t.b"),
        ("users",),
    ]
    assert [lock.line for lock in d.locks] == [1, 2]


def test_lock_names_fold_to_lower_case_like_postgresql_does() -> None:
    assert ok("-- vezamig:lock Tracks\nSELECT 1;").lock_tables == [("tracks",)]


def test_no_transaction_is_read() -> None:
    assert ok("-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);").no_transaction


def test_directives_may_follow_a_stray_semicolon_before_the_first_statement() -> None:
    assert ok(";\n-- vezamig:guard SELECT true\nSELECT 1;").guards[0].line == 2


def test_a_comment_that_merely_mentions_vezamig_is_not_a_directive() -> None:
    d = ok("-- see the vezamig:guard docs\n-- vezamig is great\nSELECT 1;")
    assert d.guards == ()


def test_a_file_with_only_comments_has_no_sql_but_may_have_directives() -> None:
    header = parse("-- vezamig:guard SELECT true\n-- nothing to do\n")
    assert header.problems == []
    assert header.has_sql is False
    assert len(header.directives.guards) == 1


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("-- vezamig:gaurd SELECT true\nSELECT 1;", 1, "unknown directive `vezamig:gaurd`"),
        ("-- ok\n/* vezamig:lcok t */\nSELECT 1;", 2, "unknown directive `vezamig:lcok`"),
        ("-- vezamig: guard SELECT true\nSELECT 1;", 1, "unknown directive"),
        ("-- vezamig:guard\nSELECT 1;", 1, "needs a query"),
        ("-- vezamig:guard SELEC true\nSELECT 1;", 1, "not valid SQL"),
        ("-- vezamig:guard SELECT true; SELECT false\nSELECT 1;", 1, "exactly one query"),
        ("-- vezamig:guard DELETE FROM t RETURNING true\nSELECT 1;", 1, "must be a SELECT"),
        ("-- vezamig:guard SELECT true INTO x\nSELECT 1;", 1, "must be a SELECT"),
        (
            "-- vezamig:guard WITH d AS (DELETE FROM t RETURNING 1) SELECT true\nSELECT 1;",
            1,
            "must only read, but has a DELETE",
        ),
        (
            "-- vezamig:guard SELECT true FROM (SELECT 1 FROM t FOR UPDATE) s\nSELECT 1;",
            1,
            "must only read, but has FOR UPDATE/SHARE",
        ),
        ("-- vezamig:lock\nSELECT 1;", 1, "needs at least one table"),
        ("-- vezamig:lock t IN SHARE MODE\nSELECT 1;", 1, "ACCESS EXCLUSIVE"),
        ("-- vezamig:lock t NOWAIT\nSELECT 1;", 1, "ACCESS EXCLUSIVE"),
        ("-- vezamig:lock otherdb.public.t\nSELECT 1;", 1, "another database"),
        ("-- vezamig:no-transaction please\nSELECT 1;", 1, "takes no arguments"),
    ],
)
def test_a_bad_directive_is_a_problem_with_file_and_line(text: str, line: int, needle: str) -> None:
    header = parse(text)
    [problem] = header.problems
    assert problem.startswith(f"sql/up/001_a_up.sql:{line}:"), problem
    assert needle in problem


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("-- header\n-- vezamig:guard SELECT 1 FROMM x\nSELECT 1;\n", ":2:33:"),
        ("/* vezamig:guard SELECT\n     true AND AND false */\nSELECT 1;\n", ":2:15:"),
        ("-- vezamig:guard SELECT 'é日' FROMM x\nSELECT 1;\n", ":1:36:"),
        ("-- vezamig:guard a\nSELECT 1;\n", ":1:18:"),  # not the `a` of `vezamig`
    ],
    ids=["line", "block", "wide", "short"],
)
def test_a_guards_syntax_error_is_placed_at_the_files_line_and_column(
    text: str, where: str
) -> None:
    [problem] = parse(text).problems
    assert problem.startswith("sql/up/001_a_up.sql" + where), problem
    assert "guard query is not valid SQL (syntax error at or near" in problem


def test_a_guards_line_is_the_line_of_its_directive() -> None:
    [guard] = ok("/*\nvezamig:guard SELECT true */\nSELECT 1;\n").guards
    assert guard.line == 2


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1;\n-- vezamig:guard SELECT true\nSELECT 2;\n",
        "SELECT 1;\n/* vezamig:guard SELECT true */\n",
        "CREATE TABLE t (\n  id int -- vezamig:lock t\n);\n",
    ],
)
def test_a_directive_after_the_first_statement_is_a_problem_with_file_and_line(
    text: str,
) -> None:
    [problem] = parse(text).problems
    assert problem.startswith("sql/up/001_a_up.sql:2:"), problem
    assert "after the first SQL statement" in problem


def test_a_misplaced_directive_is_not_obeyed() -> None:
    header = parse("SELECT 1;\n-- vezamig:guard SELECT false\n")
    assert header.directives.guards == ()


def test_no_transaction_together_with_lock_is_a_problem() -> None:
    [problem] = parse("-- vezamig:no-transaction\n-- vezamig:lock t\nSELECT 1;").problems
    assert problem.startswith("sql/up/001_a_up.sql:1:")
    assert "cannot be combined" in problem
    assert "line 2" in problem


def test_every_directive_problem_of_a_file_is_listed() -> None:
    problems = parse(
        "-- vezamig:gaurd SELECT true\n-- vezamig:lock t IN SHARE MODE\nSELECT 1;\n"
        "-- vezamig:guard SELECT true\n"
    ).problems
    assert len(problems) == 3
    assert {p.split(":")[1] for p in problems} == {"1", "2", "4"}


@pytest.mark.parametrize(
    "args",
    [
        '"; DROP TABLE x; --',
        "tracks; DROP TABLE users",
        "tracks IN ACCESS EXCLUSIVE MODE; DROP TABLE users",
        "tracks, (SELECT 1)",
        "pg_sleep(10)",
        "tracks /* ; DROP TABLE users */ DROP",
    ],
)
def test_a_lock_directive_that_is_not_just_table_names_is_refused(args: str) -> None:
    header = parse(f"-- vezamig:lock {args}\nSELECT 1;")
    [problem] = header.problems
    assert problem.startswith("sql/up/001_a_up.sql:1: lock")
    assert header.directives.locks == ()


def test_a_quoted_hostile_lock_name_is_kept_as_one_identifier() -> None:
    d = ok('-- vezamig:lock "x; DROP TABLE users; --"\nSELECT 1;')
    assert d.lock_tables == [("x; DROP TABLE users; --",)]


def test_a_syntax_error_that_stops_the_lexer_is_a_problem_with_file_line_and_column() -> None:
    [problem] = parse("-- vezamig:guard SELECT true\nSELECT 'unterminated;\n").problems
    assert problem.startswith("sql/up/001_a_up.sql:2:")
    assert "\n" not in problem  # the parser quotes the token, line break and all


def test_a_lexer_error_does_not_hide_the_directive_problems_before_it() -> None:
    header = parse("-- vezamig:gaurd SELECT true\nSELECT 1;\nSELECT 'oops;\n")
    assert [p.split(":")[1] for p in header.problems] == ["1", "3"]
    assert "unknown directive `vezamig:gaurd`" in header.problems[0]


@pytest.mark.parametrize(
    "comment",
    [
        "-- VEZAMIG:guard SELECT false",
        "-- Vezamig:guard SELECT false",
        "-- vezamig :guard SELECT false",
        "-- vezamig guard SELECT false",
        "-- vezamig lock t",
        "/* VEZAMIG:no-transaction */",
        "-- vezamig-guard SELECT false",
        "-- vezamig_guard SELECT false",
        "-- vezamig.lock t",
        "-- VEZAMIg:guard SELECT false",
        "--- vezamig:guard SELECT false",
        "/** vezamig:guard SELECT false */",
        "-- * vezamig:guard SELECT false",
        "-- vezamig;guard SELECT false",
        "-- vezamigguard SELECT false",
        "-- vezamig,guard SELECT false",
        "-- vezamig..guard SELECT false",
        "-- vezamig\\:guard SELECT false",
        "-- vezamig\uff1aguard SELECT false",
        "-- vezamig no_transaction",
        "-- vezamig_no_transaction",
        "--! vezamig:guard SELECT false",
        "--# vezamig:guard SELECT false",
        "/*! vezamig:guard SELECT false */",
        "/*+ vezamig:guard SELECT false */",
        "-- > vezamig:guard SELECT false",
        "-- \u2022 vezamig:guard SELECT false",
        "-- @vezamig:guard SELECT false",
        "-- (vezamig:guard SELECT false)",
        "-- 1. vezamig:guard SELECT false",
        "-- \u200bvezamig:guard SELECT false",
        "--'vezamig:guard SELECT false",  # a quote that does not close: a typo
        '-- "vezamig:guard SELECT false',
        '--   "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)',  # a template, edited
    ],
)
def test_an_almost_directive_is_an_error_never_silently_ignored(comment: str) -> None:
    header = parse(f"{comment}\nDROP TABLE t;\n")
    assert header.directives == Directives()
    [problem] = header.problems
    assert problem.startswith("sql/up/001_a_up.sql:1: `")
    assert "looks like a directive but is not one" in problem
    assert "`vezamig:NAME` (lower case, a colon, no space)" in problem


@pytest.mark.parametrize(
    "comment",
    [
        "/*\n * vezamig:guard SELECT false\n */",
        "/* Roll back 7 only while nothing is stored.\n   vezamig:guard SELECT false */",
    ],
)
def test_a_directive_on_a_later_line_of_a_block_comment_is_an_error(comment: str) -> None:
    # SPEC: a directive is a comment whose text *starts* with `vezamig:`; one further
    # down is not, and must not be a guard that silently never runs.
    header = parse(f"{comment}\nDROP TABLE t;\n")
    assert header.directives == Directives()
    [problem] = header.problems
    assert problem.startswith("sql/up/001_a_up.sql:2: `vezamig:guard SELECT false")
    assert "looks like a directive but is not one" in problem


@pytest.mark.parametrize(
    "comment",
    [
        "/* header\x0c vezamig:guard SELECT false */",  # a form feed
        "-- header\x0b-- vezamig:guard SELECT false",  # `cat` shows it on its own line
        "/* header\u2028vezamig:guard SELECT false */",
        "/* header\u2029vezamig:guard SELECT false */",
        "/* header\x85vezamig:guard SELECT false */",
        "/* outer /* vezamig:guard SELECT false */ */",  # a nested comment
        "-- note /* vezamig:guard SELECT false */",
    ],
)
def test_an_almost_directive_after_what_a_reader_sees_as_a_line_break_is_an_error(
    comment: str,
) -> None:
    """Found by an audit: these look like a directive on a line of its own (or in a
    comment of its own) but were silently ignored, the guard with them."""
    header = parse(f"{comment}\nDROP TABLE t;\n")
    assert header.directives == Directives()
    [problem] = header.problems
    assert problem.startswith("sql/up/001_a_up.sql:1: `vezamig:guard SELECT false")
    assert "looks like a directive but is not one" in problem


def test_prose_that_mentions_vezamig_is_not_mistaken_for_a_directive() -> None:
    d = ok(
        "-- vezamig runs this file in one transaction\n-- Applied by vezamig.\n"
        "-- vezamig guards it: see below\n-- -------\n/* ***** */\n/*** vezamig ***/\n"
        "-- vezamig-managed\n"
        '-- e.g. "-- vezamig:guard SELECT …" or `vezamig:lock t` (quoted: documentation)\n'
        '--   "-- vezamig:lock t"  takes the lock first\n'
        "SELECT 1;\n"
    )
    assert d == Directives()


def test_problems_of_one_file_are_listed_in_line_order() -> None:
    header = parse(
        "-- vezamig:gaurd SELECT true\n"  # line 1: unknown name
        "SELECT 1;\n"
        "-- VEZAMIG:guard SELECT true\n"  # line 3: almost a directive
        "-- vezamig:guard SELECT true\n"  # line 4: after the first statement
    )
    assert [p.split(":")[1] for p in header.problems] == ["1", "3", "4"]


# ---- `status`: a plain header read without the lexer ------------------------------------

PLAIN_HEADERS = [
    "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
    "-- Roll back 985\n-- vezamig:lock tracks\n"
    "  -- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM tracks)  \n\n"
    "ALTER TABLE tracks DROP COLUMN c;\n",
    "-- vezamig:gaurd SELECT true\nSELECT 1;\n",
    "-- VEZAMIG:guard SELECT false\nDROP TABLE t;\n",
    "-- vezamig guard SELECT false\nDROP TABLE t;\n",
    "-- vezamig:guard SELECT (\nDROP TABLE t;\n",
    "-- vezamig:guard DELETE FROM t RETURNING true\nSELECT 1;\n",
    "-- vezamig:lock t NOWAIT\nSELECT 1;\n",
    "-- vezamig:no-transaction\n-- vezamig:lock t\nSELECT 1;\n",
    "-- vezamig:no-transaction extra\nSELECT 1;\n",
    "-- vezamig runs this file\n-- vezamig guards it: see below\nSELECT 1;\n",
    '--   "-- vezamig:lock t"  takes the lock first\nSELECT 1;\n',
]


@pytest.mark.parametrize("text", PLAIN_HEADERS)
def test_a_plain_header_read_without_the_lexer_gives_the_same_directives_and_problems(
    text: str,
) -> None:
    from vezamig.sqltext import plain_header_comments

    assert plain_header_comments(text) is not None  # the short way is taken
    quick = parse_directives(text, "sql/up/001_a_up.sql", lex_body=False)
    assert (quick.lexed, parse(text).lexed) == (False, True)
    quick.lexed = True
    assert quick == parse(text)


def test_without_the_lexer_a_lexer_error_in_the_body_is_not_seen() -> None:
    """Left to the run: `up` lexes the files it runs before any step (Runner.plan)."""
    text = "-- vezamig:no-transaction\nSELECT 'unterminated;\n"
    assert parse(text).problems
    assert parse_directives(text, "sql/up/001_a_up.sql", lex_body=False).problems == []
